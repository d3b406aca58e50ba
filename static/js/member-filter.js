// The share page's "Find people" box. When the page lists every teammate, only the people whose
// name holds what is typed stay listed, and those already chosen, so a choice never hides;
// without scripts the box stays hidden and the whole list shows. In a team larger than the page
// lists, the box is there without scripts too, with a Find button that asks the server for the
// people whose name holds it (those chosen are kept): typing still narrows the list shown, and
// Enter finds.

const filter = document.querySelector("[data-member-filter]");
if (filter) {
  const input = filter.querySelector("input");
  const find = filter.querySelector("button[name=find_people]");
  const status = filter.querySelector("[role=status]");
  const list = document.getElementById(input.getAttribute("aria-controls"));
  const rows = [...list.querySelectorAll("input[type=checkbox]")].map((box) => ({
    box,
    row: box.closest("label").parentElement,
    name: box.closest("label").textContent.trim().toLocaleLowerCase(),
  }));

  const render = () => {
    const wanted = input.value.trim().toLocaleLowerCase();
    let shown = 0;
    let chosen = 0;
    for (const { box, row, name } of rows) {
      row.hidden = !(box.checked || name.includes(wanted));
      if (!row.hidden) shown += 1;
      if (box.checked) chosen += 1;
    }
    const people = rows.length === 1 ? "person" : "people";
    const listed = find ? ` listed ${people}` : ` ${people}`;
    status.textContent = `${shown} of ${rows.length}${listed} shown, ${chosen} chosen.`;
  };

  input.addEventListener("input", render);
  input.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault(); // filters as typed: Enter sends nothing, but for Find
    if (find) input.form.requestSubmit(find);
  });
  list.addEventListener("change", render);
  filter.hidden = false;
  render();
}
