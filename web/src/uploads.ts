// Uploads with tus-js-client: one row per file with its progress, speed, pause/resume, cancel.
//
// Resumable across reloads: tus-js-client keeps each upload's URL in localStorage under a
// fingerprint that names the signed-in user, so a file dropped again after a reload continues
// at the server's offset, and one user never resumes another's upload.

import { DetailedError, Upload, defaultOptions, type PreviousUpload } from "tus-js-client";
import { errorFromBody } from "./api";
import { el } from "./dom";
import { formatBytes, formatSpeed } from "./format";
import type { Session } from "./session";

const ENDPOINT = "/v1/uploads/tus";
// Several PATCH requests per large file: progress survives a dropped connection in steps of
// this size, and no single request outlives a proxy's timeout.
const CHUNK_SIZE = 4 * 1024 * 1024;
const FINGERPRINT_PREFIX = "upload-service";

function fingerprintFor(user: string, file: File): string {
  return [FINGERPRINT_PREFIX, user, file.name, file.type, file.size, file.lastModified].join("/");
}

/** The message to show for a failed upload: the service's own when it answered. */
export function uploadErrorMessage(error: Error): string {
  if (error instanceof DetailedError && error.originalResponse) {
    const response = error.originalResponse;
    return errorFromBody(response.getStatus(), response.getBody() ?? "").message;
  }
  if (error instanceof DetailedError) return "The connection to the service was lost";
  return error.message;
}

/** Uploads left unfinished by this user in this browser (to be resumed by dropping the file). */
export async function unfinishedUploads(user: string): Promise<PreviousUpload[]> {
  const all = await defaultOptions.urlStorage.findAllUploads();
  return all.filter((upload) =>
    (upload as PreviousUpload & { urlStorageKey?: string }).urlStorageKey?.includes(
      `${FINGERPRINT_PREFIX}/${user}/`,
    ),
  );
}

/** Drop what this browser remembers of `file`'s upload, so it is not offered for resuming. */
async function forgetUpload(user: string, file: File): Promise<void> {
  const storage = defaultOptions.urlStorage;
  for (const upload of await storage.findUploadsByFingerprint(fingerprintFor(user, file))) {
    await storage.removeUpload(upload.urlStorageKey);
  }
}

class UploadRow {
  readonly element: HTMLLIElement;
  private readonly progress: HTMLProgressElement;
  private readonly status: HTMLElement;
  private readonly pause: HTMLButtonElement;
  private readonly cancel: HTMLButtonElement;
  private readonly upload: Upload;
  private paused = false;
  private samples: { at: number; bytes: number }[] = [];
  private speed = 0;
  readonly user: string;

  constructor(
    private readonly file: File,
    session: Session,
    private readonly onFinished: () => void,
  ) {
    this.user = session.user;
    const name = el("span", { class: "name" }, file.name);
    this.progress = el("progress", { max: "100", value: "0", "aria-label": `Upload of ${file.name}` });
    this.status = el("span", { class: "status", role: "status" }, "Starting…");
    this.pause = el("button", { type: "button", class: "quiet" }, "Pause");
    this.cancel = el("button", { type: "button", class: "quiet" }, "Cancel");
    this.pause.setAttribute("aria-label", `Pause ${file.name}`);
    this.cancel.setAttribute("aria-label", `Cancel ${file.name}`);
    this.element = el(
      "li",
      { class: "upload", "data-filename": file.name, "data-state": "uploading" },
      el("div", { class: "row" }, name, el("span", { class: "size" }, formatBytes(file.size))),
      this.progress,
      el("div", { class: "row" }, this.status, el("span", { class: "actions" }, this.pause, this.cancel)),
    );
    this.pause.addEventListener("click", () => this.togglePause());
    // Cancel terminates a running upload; once refused, the same button dismisses the row.
    this.cancel.addEventListener("click", () =>
      this.element.dataset.state === "refused" ? this.element.remove() : void this.abort(),
    );

    this.upload = new Upload(file, {
      endpoint: ENDPOINT,
      headers: { Authorization: `Bearer ${session.token}` },
      metadata: { filename: file.name, filetype: file.type || "application/octet-stream" },
      chunkSize: CHUNK_SIZE,
      retryDelays: [0, 1000, 3000, 5000],
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      fingerprint: async (f) => fingerprintFor(session.user, f as File),
      onAfterResponse: (request, response) => {
        // A resumed upload asks the service where it stopped: that offset is where it goes on.
        if (request.getMethod() === "HEAD" && response.getStatus() === 200) {
          this.element.dataset.resumedFrom = response.getHeader("Upload-Offset") ?? "0";
        }
      },
      onProgress: (sent, total) => this.showProgress(sent, total),
      onSuccess: () => this.succeeded(),
      onError: (error) => this.failed(error),
    });
  }

  async start(): Promise<void> {
    const previous = await this.upload.findPreviousUploads();
    if (previous.length > 0) {
      this.upload.resumeFromPreviousUpload(previous[0]);
    }
    this.upload.start();
  }

  private showProgress(sent: number, total: number): void {
    // Speed over about the last second of progress events (from the first one, before that).
    const now = performance.now();
    this.samples.push({ at: now, bytes: sent });
    while (this.samples.length > 2 && now - this.samples[1].at >= 1000) this.samples.shift();
    const first = this.samples[0];
    const elapsed = (now - first.at) / 1000;
    if (elapsed > 0.05) this.speed = (sent - first.bytes) / elapsed;
    const percent = total > 0 ? Math.floor((sent / total) * 100) : 0;
    this.progress.value = percent;
    const resumed = this.element.dataset.resumedFrom
      ? ` · resumed at ${formatBytes(Number(this.element.dataset.resumedFrom))}`
      : "";
    this.status.textContent = `${percent}% · ${formatBytes(sent)} of ${formatBytes(total)} · ${formatSpeed(this.speed)}${resumed}`;
  }

  private togglePause(): void {
    if (this.paused) {
      this.paused = false;
      this.pause.textContent = "Pause";
      this.pause.setAttribute("aria-label", `Pause ${this.file.name}`);
      this.element.dataset.state = "uploading";
      this.samples = [];
      this.speed = 0;
      this.upload.start();
    } else {
      this.paused = true;
      void this.upload.abort();
      this.pause.textContent = "Resume";
      this.pause.setAttribute("aria-label", `Resume ${this.file.name}`);
      this.element.dataset.state = "paused";
      this.status.textContent = `Paused at ${this.progress.value}%`;
    }
  }

  private async abort(): Promise<void> {
    this.pause.disabled = true;
    this.cancel.disabled = true;
    this.element.dataset.state = "cancelled";
    this.status.textContent = "Cancelled";
    // Terminates the upload on the service (DELETE), which removes the bytes it holds.
    await this.upload.abort(true).catch(() => undefined);
    await forgetUpload(this.user, this.file);
    this.onFinished();
    setTimeout(() => this.element.remove(), 1500);
  }

  private succeeded(): void {
    this.progress.value = 100;
    this.element.dataset.state = "done";
    this.status.textContent = "Uploaded: now in My documents";
    this.pause.remove();
    this.cancel.remove();
    this.onFinished();
    setTimeout(() => this.element.remove(), 4000);
  }

  private failed(error: Error): void {
    this.element.dataset.state = "refused";
    this.progress.hidden = true;
    // A refusal is final (the service has ended the upload): nothing is left to resume. A lost
    // connection, a busy upload or a rate limit is not: dropping the file again resumes it.
    const status = error instanceof DetailedError ? (error.originalResponse?.getStatus() ?? 0) : 0;
    const final = status >= 400 && status < 500 && ![408, 409, 423, 429].includes(status);
    void (final ? forgetUpload(this.user, this.file) : Promise.resolve()).finally(() => this.onFinished());
    this.status.textContent = uploadErrorMessage(error);
    this.status.classList.add("error");
    this.status.setAttribute("role", "alert");
    this.pause.remove();
    this.cancel.textContent = "Dismiss";
    this.cancel.setAttribute("aria-label", `Dismiss ${this.file.name}`);
  }
}

/** Start an upload of each file under `list`; `onFinished` runs when one ends, however. */
export function uploadFiles(files: Iterable<File>, session: Session, list: HTMLElement, onFinished: () => void): void {
  for (const file of files) {
    const row = new UploadRow(file, session, onFinished);
    list.append(row.element);
    void row.start();
  }
}
