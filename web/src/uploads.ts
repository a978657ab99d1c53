// Uploads: one row per file with its progress, speed, pause/resume, cancel.
//
// When the service offers direct uploads to S3 (`direct.ts`) a file goes that way, and the tus
// way (tus-js-client) when it does not, when it declines the declaration, or when S3 cannot be
// reached from this browser: the file is sent either way, never lost.
//
// Resumable across reloads either way: tus-js-client keeps each upload's URL in localStorage
// under a fingerprint that names the signed-in user (`direct.ts` does the same for its uploads),
// so a file dropped again after a reload continues where it stopped, and one user never resumes
// another's upload.

import { DetailedError, Upload, defaultOptions, type PreviousUpload } from "tus-js-client";
import { ApiError, errorFromBody } from "./api";
import { DirectUpload, FallBack, Stopped, directUploadsUsable, unfinishedDirectUploads } from "./direct";
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

/** Names of the files this user left unfinished in this browser (resumed by dropping them). */
export async function unfinishedUploads(user: string): Promise<string[]> {
  const all = await defaultOptions.urlStorage.findAllUploads();
  const tus = all.filter((upload) =>
    (upload as PreviousUpload & { urlStorageKey?: string }).urlStorageKey?.includes(
      `${FINGERPRINT_PREFIX}/${user}/`,
    ),
  );
  return [...tus.map((upload) => upload.metadata.filename ?? "a file"), ...unfinishedDirectUploads(user)];
}

/** Whether a failure is final (the service ended the upload): nothing is left to resume then. A
 * lost connection, a busy upload or a rate limit is not: dropping the file again resumes it. */
function isFinal(status: number): boolean {
  return status >= 400 && status < 500 && ![408, 409, 423, 429].includes(status);
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
  // The way the file goes: straight to S3 while `direct` is set, else tus.
  private direct: DirectUpload | null = null;
  private tus: Upload | null = null;
  private paused = false;
  private samples: { at: number; bytes: number }[] = [];
  private speed = 0;
  readonly user: string;

  constructor(
    private readonly file: File,
    private readonly session: Session,
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
  }

  async start(): Promise<void> {
    if (directUploadsUsable()) {
      this.direct = new DirectUpload(this.file, this.session, {
        progress: (sent, total) => this.showProgress(sent, total),
        resumedFrom: (bytes) => {
          this.element.dataset.resumedFrom = String(bytes);
        },
        // The service verifies the bytes in S3 before it records them: for a large file, a while.
        completing: () => {
          this.progress.value = 100;
          this.status.textContent = "Sent: the service is checking it…";
        },
      });
      this.element.dataset.route = "direct";
      await this.runDirect();
    } else {
      await this.startTus();
    }
  }

  private async runDirect(): Promise<void> {
    const direct = this.direct;
    if (!direct) return;
    try {
      await direct.run();
    } catch (error) {
      if (error instanceof Stopped) return; // Paused or cancelled: the button said so already.
      if (error instanceof FallBack) {
        this.direct = null;
        delete this.element.dataset.resumedFrom;
        await this.startTus();
        return;
      }
      const refusal = error instanceof ApiError ? error : new ApiError(0, "ERROR", String(error));
      this.failed(refusal.message, isFinal(refusal.status));
      return;
    }
    this.succeeded();
  }

  private async startTus(): Promise<void> {
    const session = this.session;
    this.element.dataset.route = "tus";
    this.tus = new Upload(this.file, {
      endpoint: ENDPOINT,
      headers: { Authorization: `Bearer ${session.token}` },
      metadata: { filename: this.file.name, filetype: this.file.type || "application/octet-stream" },
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
      onError: (error) => {
        const status = error instanceof DetailedError ? (error.originalResponse?.getStatus() ?? 0) : 0;
        this.failed(uploadErrorMessage(error), isFinal(status));
      },
    });
    const previous = await this.tus.findPreviousUploads();
    if (previous.length > 0) {
      this.tus.resumeFromPreviousUpload(previous[0]);
    }
    if (!this.paused) this.tus.start();
  }

  private showProgress(sent: number, total: number): void {
    // Requests being cut off by a pause or a cancel still report: the row keeps saying so.
    if (this.paused || this.element.dataset.state !== "uploading") return;
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
      if (this.direct) void this.runDirect();
      else this.tus?.start();
    } else {
      this.paused = true;
      if (this.direct) this.direct.pause();
      else void this.tus?.abort();
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
    // Terminates the upload on the service (DELETE), which removes the bytes it (or S3) holds.
    if (this.direct) await this.direct.cancel();
    await this.tus?.abort(true).catch(() => undefined);
    await forgetUpload(this.user, this.file);
    this.onFinished();
    setTimeout(() => this.element.remove(), 1500);
  }

  private succeeded(): void {
    if (this.element.dataset.state === "cancelled") return; // Too late for the cancel to stop it.
    this.progress.value = 100;
    this.element.dataset.state = "done";
    this.status.textContent = "Uploaded: now in My documents";
    this.pause.remove();
    this.cancel.remove();
    this.onFinished();
    setTimeout(() => this.element.remove(), 4000);
  }

  private failed(message: string, final: boolean): void {
    if (this.element.dataset.state === "cancelled") return;
    this.element.dataset.state = "refused";
    this.progress.hidden = true;
    if (final) this.direct?.forget();
    void (final ? forgetUpload(this.user, this.file) : Promise.resolve()).finally(() => this.onFinished());
    this.status.textContent = message;
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
