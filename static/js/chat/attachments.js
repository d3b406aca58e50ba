// Files in the chat: the caps checked before an upload, the composer's tray of files, the
// files shown on sent messages, and the dialog that shows an image large.
//
// Names, sizes and errors are set as text, images load from the access-checked
// `/api/uploads/<id>/`, documents are links that download: nothing from a file becomes HTML.

import { h, icon } from "./dom.js";

const IMAGE_TYPES = new Set(["image/png", "image/jpeg", "image/webp", "image/gif"]);
export const IMAGE_SUFFIX = /\.(png|jpe?g|jpe|jfif|webp|gif)$/i;

export function uploadUrl(id) {
  return `/api/uploads/${id}/`;
}

/** "1 page", "3 pages": as chatapp.core.words.counted, for nouns that take an s. */
function counted(count, noun) {
  return count === 1 ? `1 ${noun}` : `${count} ${noun}s`;
}

/** "1 byte", "512 bytes", "48 KB", "1.5 MB" */
export function formatBytes(bytes) {
  if (bytes < 1024) return counted(bytes, "byte");
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  const megabytes = bytes / (1024 * 1024);
  return `${megabytes < 10 ? megabytes.toFixed(1).replace(/\.0$/, "") : Math.round(megabytes)} MB`;
}

/** What a file from the page looks like before the server has judged its bytes. */
export function guessKind(file) {
  return IMAGE_TYPES.has(file.type) || IMAGE_SUFFIX.test(file.name || "") ? "image" : "document";
}

export function seesImages(model, limits) {
  return limits.imageModels.includes(model);
}

/** Why images cannot be attached with this model, or "" when they can. */
export function imageRefusal(model, limits) {
  if (seesImages(model, limits)) return "";
  return `${model} does not see images: choose a model that does (such as Llama 4) to attach images. Documents work with every model.`;
}

/**
 * Which of `files` may join the composer's `drafts` under the caps (count and size per file
 * and per message) and the model's capability. Returns {accepted, refusals}: the files to
 * upload, and a sentence for each refused one.
 */
export function checkFiles(files, { drafts, limits, model }) {
  const accepted = [];
  const refusals = [];
  let count = drafts.length;
  let total = drafts.reduce((sum, draft) => sum + draft.bytes, 0);
  const noImages = imageRefusal(model, limits);
  for (const file of files) {
    const name = file.name || "The pasted image";
    if (guessKind(file) === "image" && noImages) {
      if (!refusals.includes(noImages)) refusals.push(noImages);
    } else if (file.size === 0) {
      refusals.push(`${name} is empty.`);
    } else if (file.size > limits.maxFileBytes) {
      refusals.push(
        `${name} is too large: files may be at most ${formatBytes(limits.maxFileBytes)}.`,
      );
    } else if (count + 1 > limits.maxFiles) {
      const most = counted(limits.maxFiles, "file");
      refusals.push(`${name} was not attached: a message takes at most ${most}.`);
    } else if (total + file.size > limits.maxMessageBytes) {
      refusals.push(
        `${name} was not attached: the files of one message may be at most ${formatBytes(limits.maxMessageBytes)} together.`,
      );
    } else {
      accepted.push(file);
      count += 1;
      total += file.size;
    }
  }
  return { accepted, refusals };
}

function documentDetail(attachment) {
  const size = formatBytes(attachment.bytes);
  if (!attachment.pages) return size;
  return `${size} · ${counted(attachment.pages, "page")}`;
}

// ---- the composer's tray -------------------------------------------------------------------

function draftDetail(draft) {
  if (draft.status === "uploading") return `Uploading… ${Math.round(draft.progress * 100)}%`;
  if (draft.status === "failed") return draft.error;
  return draft.upload.kind === "image"
    ? formatBytes(draft.upload.bytes)
    : documentDetail(draft.upload);
}

class DraftView {
  constructor(draft, onRemove) {
    this.preview = h("span", { className: "draft-preview" });
    this.name = h("span", { className: "draft-name", text: draft.name, title: draft.name });
    this.detail = h("span", { className: "draft-detail" });
    // On a phone a refused file's reason is cut to two lines (chat.css): a tap shows it all.
    this.detail.addEventListener("click", () => this.detail.classList.toggle("is-open"));
    this.progress = h("progress", { className: "draft-progress", max: "1" });
    this.progress.setAttribute("aria-label", `Uploading ${draft.name}`);
    const remove = h(
      "button",
      { type: "button", className: "draft-remove", "aria-label": `Remove ${draft.name}` },
      icon("close"),
    );
    remove.addEventListener("click", () => onRemove(draft.key));
    const text = h("span", { className: "draft-text" }, this.name, this.detail, this.progress);
    this.element = h("li", { className: "draft" }, this.preview, text, remove);
    this.shownPreview = null;
  }

  render(draft, { imagesRefused }) {
    const kind = draft.upload?.kind ?? draft.kind;
    this.element.toggleAttribute("data-blocked", kind === "image" && imagesRefused);
    this.element.dataset.status = draft.status;
    this.element.dataset.kind = kind;
    // Not a live region: #chat-announcer says once what a batch of files came to.
    this.detail.textContent = draftDetail(draft);
    this.detail.title = draft.status === "failed" ? draft.error : "";
    this.progress.hidden = draft.status !== "uploading";
    this.progress.value = draft.progress;
    // An image shows itself once stored: the server's copy, without its metadata.
    const preview = kind === "image" && draft.upload ? uploadUrl(draft.upload.id) : kind;
    if (preview === this.shownPreview) return;
    this.shownPreview = preview;
    if (kind === "image" && draft.upload) {
      this.preview.replaceChildren(h("img", { src: preview, alt: "" }));
    } else {
      this.preview.replaceChildren(icon(kind === "image" ? "image" : "file"));
    }
  }
}

/** The files waiting in the composer, drawn from the state's drafts. */
export class DraftTray {
  constructor({ list, onRemove }) {
    this.list = list;
    this.onRemove = onRemove;
    this.views = new Map(); // draft key -> DraftView
  }

  render(drafts, { imagesRefused }) {
    const keys = new Set(drafts.map((draft) => draft.key));
    for (const [key, view] of this.views) {
      if (!keys.has(key)) {
        view.element.remove();
        this.views.delete(key);
      }
    }
    for (const draft of drafts) {
      let view = this.views.get(draft.key);
      if (!view) {
        view = new DraftView(draft, this.onRemove);
        this.views.set(draft.key, view);
        this.list.append(view.element);
      }
      view.render(draft, { imagesRefused });
    }
    this.list.hidden = drafts.length === 0;
  }
}

// ---- files on a sent message ---------------------------------------------------------------

/** Thumbnails (buttons that open the viewer) and file chips (downloads) of a message. */
export function attachmentList(attachments, { onView }) {
  const images = attachments.filter((attachment) => attachment.kind === "image");
  const documents = attachments.filter((attachment) => attachment.kind !== "image");
  const list = h("div", { className: "message-attachments" });
  for (const image of images) {
    const thumb = h(
      "button",
      { type: "button", className: "attachment-thumb", "aria-label": `View image ${image.name}` },
      h("img", {
        src: uploadUrl(image.id),
        alt: image.name,
        width: image.width ?? undefined,
        height: image.height ?? undefined,
        loading: "lazy",
      }),
    );
    thumb.addEventListener("click", () => onView(image, thumb));
    list.append(thumb);
  }
  for (const file of documents) {
    list.append(
      h(
        "a",
        {
          className: "file-chip",
          href: uploadUrl(file.id),
          download: file.name,
          title: `Download ${file.name}`,
        },
        icon("file"),
        h("span", { className: "visually-hidden", text: "Download " }),
        h(
          "span",
          { className: "file-chip-text" },
          h("span", { className: "file-chip-name", text: file.name }),
          h("span", { className: "file-chip-detail", text: documentDetail(file) }),
        ),
      ),
    );
  }
  return list;
}

// ---- the image viewer ----------------------------------------------------------------------

/** A modal dialog showing one image large; Escape, the close button or the backdrop close it. */
export class ImageViewer {
  constructor(dialog) {
    this.dialog = dialog;
    this.title = dialog.querySelector("[data-viewer-title]");
    this.image = dialog.querySelector("[data-viewer-image]");
    this.download = dialog.querySelector("[data-viewer-download]");
    this.opener = null;
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) dialog.close(); // the backdrop
    });
    dialog.addEventListener("close", () => {
      this.image.removeAttribute("src");
      // Focus goes back to the thumbnail that opened the viewer.
      if (this.opener?.isConnected) this.opener.focus();
      this.opener = null;
    });
  }

  open(attachment, opener) {
    this.opener = opener;
    this.title.textContent = attachment.name;
    this.image.alt = attachment.name;
    this.image.src = uploadUrl(attachment.id);
    this.download.href = uploadUrl(attachment.id);
    this.download.setAttribute("download", attachment.name);
    this.dialog.showModal();
  }
}
