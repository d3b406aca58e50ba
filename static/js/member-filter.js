// The share page's "Find people" box: with hundreds of teammates, only the people whose name
// holds what is typed stay listed, and those already chosen, so a choice never hides. Without
// scripts the box stays hidden and the whole list shows.

const filter = document.querySelector("[data-member-filter]");
if (filter) {
  const input = filter.querySelector("input");
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
    status.textContent = `${shown} of ${rows.length} ${people} shown, ${chosen} chosen.`;
  };

  input.addEventListener("input", render);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") event.preventDefault(); // filters as typed: Enter sends nothing
  });
  list.addEventListener("change", render);
  filter.hidden = false;
  render();
}
