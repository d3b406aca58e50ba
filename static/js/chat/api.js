// The JSON API (`/api/...`): session cookie auth, CSRF header on writes, errors as ApiError.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  if (match) return decodeURIComponent(match[1]);
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

function errorMessage(status, data) {
  const detail = data && (data.error?.message || data.detail || data.message);
  if (detail) return String(detail);
  if (status === 404) return "Not found: it may have been deleted.";
  if (status === 403) return "Your session expired: reload the page and sign in again.";
  return `The server answered ${status}: try again in a moment.`;
}

/** Call the API; resolves to the parsed JSON body (null for an empty reply). An AbortSignal
 * (`signal`) cancels it. */
export async function api(path, { method = "GET", body, keepalive = false, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      keepalive, // a request that must outlive the page (one sent as it is left)
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch {
    if (signal?.aborted) throw new ApiError(0, "Cancelled.");
    throw new ApiError(0, "The server could not be reached: check your connection.");
  }
  if (response.redirected && new URL(response.url).pathname.startsWith("/accounts/login/")) {
    throw new ApiError(401, "Your session ended: sign in again.");
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, errorMessage(response.status, data));
  return data;
}

/**
 * Upload one file to `POST /api/uploads/` (multipart field `file`) for a chat of `team`,
 * reporting progress.
 * Resolves to the upload's summary, or rejects with an ApiError carrying the server's words.
 */
export function uploadFile(file, team, onProgress) {
  const request = new XMLHttpRequest();
  return new Promise((resolve, reject) => {
    request.open("POST", "/api/uploads/");
    request.setRequestHeader("Accept", "application/json");
    request.setRequestHeader("X-CSRFToken", csrfToken());
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable && event.total > 0) onProgress(event.loaded / event.total);
    });
    request.addEventListener("load", () => {
      let data = null;
      try {
        data = request.responseText ? JSON.parse(request.responseText) : null;
      } catch {
        data = null;
      }
      if (request.status === 201 && data) resolve(data);
      else reject(new ApiError(request.status, errorMessage(request.status, data)));
    });
    request.addEventListener("error", () => {
      reject(new ApiError(0, "The upload failed: check your connection and try again."));
    });
    const form = new FormData();
    form.append("file", file, file.name || "pasted-image.png");
    if (team) form.append("team", String(team));
    request.send(form);
  });
}
