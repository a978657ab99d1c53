// Direct uploads to S3 (`/v1/uploads/direct`): the file goes straight to S3 through requests the
// service presigned, and the service verifies and records it. No byte passes through the service.
//
// A small file is one presigned POST; a larger one an S3 multipart upload whose parts are PUT to
// their signed URLs, a few in flight. A multipart upload's id is kept in localStorage under the
// signed-in user and the file's identity, so after a reload the same file continues from the
// parts S3 holds (the service lists them: the page never reads S3's ETag header, which S3 only
// exposes cross-origin when its CORS rule says so). `complete` is sent without a parts list: the
// service takes them from S3 itself. XMLHttpRequest, not fetch, because only it reports upload
// progress. The Bearer token goes to the service only, never to S3. No sha256 is declared: the
// browser has no streaming digest, a large file is never read whole into memory to hash it, and
// the service computes the whole file's sha256 before it records the document.

import { ApiError, call } from "./api";
import type { Session } from "./session";

const ENDPOINT = "/v1/uploads/direct";
const PARTS_IN_FLIGHT = 3;
// Per part: a lost connection or a 5xx is tried again after a pause, a 403 (an expired URL) is
// signed again; past this the upload stops, resumable by dropping the file again.
const PART_ATTEMPTS = 4;
const SIGN_BATCH = 100;
const STORAGE_PREFIX = "upload-service-direct/";

interface PresignedPost {
  url: string;
  fields: Record<string, string>;
}

interface DirectUploadState {
  upload_id: string;
  method: "post" | "multipart";
  part_size: number;
  part_count: number;
  post?: PresignedPost | null;
  state?: string;
  parts?: { part_number: number; size: number }[];
}

interface SignedPart {
  part_number: number;
  size: number;
  url: string;
}

/** Whether the service offers direct uploads (it says so in the page it serves). */
export function directUploadsOffered(): boolean {
  return document.querySelector('meta[name="direct-uploads"]')?.getAttribute("content") === "on";
}

// Once S3 could not be reached from this page (no route, or its CORS rule refuses this origin),
// later files go the tus way at once instead of failing first.
let s3Unreachable = false;

export function directUploadsUsable(): boolean {
  return directUploadsOffered() && !s3Unreachable;
}

/** The file should go the tus way: the service or this browser cannot send it directly. */
export class FallBack extends Error {}

/** The upload was paused (or cancelled) by the person: nothing to report. */
export class Stopped extends Error {}

function storageKey(user: string, file: File): string {
  return [STORAGE_PREFIX + user, file.name, file.type, file.size, file.lastModified].join("/");
}

/** Names of the files whose direct uploads this user left unfinished in this browser. */
export function unfinishedDirectUploads(user: string): string[] {
  const names: string[] = [];
  for (let index = 0; index < localStorage.length; index += 1) {
    const key = localStorage.key(index);
    if (!key?.startsWith(`${STORAGE_PREFIX}${user}/`)) continue;
    try {
      const saved = JSON.parse(localStorage.getItem(key) ?? "") as { filename?: unknown };
      if (typeof saved.filename === "string") names.push(saved.filename);
    } catch {
      localStorage.removeItem(key); // Not ours to make sense of any more.
    }
  }
  return names;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function json<T>(response: Response): Promise<T> {
  return (await response.json()) as T;
}

export interface DirectProgress {
  progress(sent: number, total: number): void;
  resumedFrom(bytes: number): void;
  completing(): void;
}

/** One file's direct upload; `run` again after `pause` continues it. */
export class DirectUpload {
  private readonly requests = new Set<XMLHttpRequest>();
  private readonly key: string;
  private upload: DirectUploadState | null = null;
  private stopped = false;
  private running: Promise<void> | null = null;
  // Whether S3 has answered this page for this file: a lost connection after that is a network
  // problem to retry, not a sign that S3 is out of the browser's reach.
  private reachedS3 = false;

  constructor(
    private readonly file: File,
    private readonly session: Session,
    private readonly report: DirectProgress,
  ) {
    this.key = storageKey(session.user, file);
  }

  /**
   * Send the file and have the service record it. Throws `FallBack` when it must go by tus,
   * `Stopped` when paused or cancelled, and `ApiError` when refused or failed.
   */
  run(): Promise<void> {
    // A paused run may still be settling (a retry's pause): the new one waits for it, so no two
    // send the same parts.
    const previous = this.running;
    const current = (async () => {
      await previous?.catch(() => undefined);
      this.stopped = false;
      await this.send();
    })();
    this.running = current;
    return current;
  }

  private async send(): Promise<void> {
    for (let fresh = 0; ; fresh += 1) {
      const upload = (await this.resumable()) ?? (await this.declare());
      // Already being completed (or completed: `complete` answers its document again).
      const open = upload.state === undefined || upload.state === "pending";
      if (open && upload.method === "post") await this.post(upload);
      else if (open) await this.sendParts(upload);
      this.report.completing();
      try {
        await this.service("POST", `${ENDPOINT}/${upload.upload_id}/complete`);
        this.forget();
        return;
      } catch (error) {
        // Expired before it was complete: the service has removed it, so start over once.
        if (!(error instanceof ApiError && error.status === 410) || fresh > 0) throw error;
        this.forget();
        this.upload = null;
      }
    }
  }

  /** Stop sending; `run` continues from what S3 holds. */
  pause(): void {
    this.stopped = true;
    for (const request of this.requests) request.abort();
  }

  /** Stop and have the service remove the upload and what S3 holds of it (DELETE). */
  async cancel(): Promise<void> {
    this.pause();
    await this.discard();
  }

  /** Remove the upload, when the file goes the tus way or is refused by S3. */
  async discard(): Promise<void> {
    const upload = this.upload;
    this.upload = null;
    this.forget();
    if (upload) await this.service("DELETE", `${ENDPOINT}/${upload.upload_id}`).catch(() => undefined);
  }

  forget(): void {
    localStorage.removeItem(this.key);
  }

  /** The upload this page started for this file (in memory, or before a reload), or null. */
  private async resumable(): Promise<DirectUploadState | null> {
    if (this.upload?.method === "post") return this.upload; // A POST is simply sent again.
    let uploadId = this.upload?.upload_id;
    if (!uploadId) {
      try {
        uploadId = (JSON.parse(localStorage.getItem(this.key) ?? "null") as { upload_id?: string } | null)
          ?.upload_id;
      } catch {
        uploadId = undefined;
      }
    }
    if (!uploadId) return null;
    let found: DirectUploadState;
    try {
      found = await json<DirectUploadState>(await this.service("GET", `${ENDPOINT}/${uploadId}`));
    } catch (error) {
      // Unknown, expired or removed: it starts over. Anything else is worth reporting.
      if (error instanceof ApiError && [404, 410].includes(error.status)) {
        this.forget();
        this.upload = null;
        return null;
      }
      throw error;
    }
    if (!["pending", "completing", "completed"].includes(found.state ?? "")) {
      this.forget();
      this.upload = null;
      return null;
    }
    const held = (found.parts ?? []).reduce((sum, part) => sum + part.size, 0);
    if (held > 0) this.report.resumedFrom(held);
    this.upload = found;
    return found;
  }

  private async declare(): Promise<DirectUploadState> {
    let response: Response;
    try {
      response = await this.service("POST", ENDPOINT, {
        filename: this.file.name,
        size: this.file.size,
        content_type: this.file.type || "application/octet-stream",
      });
    } catch (error) {
      // Not offered after all (turned off since the page loaded, or an older service).
      if (error instanceof ApiError && [404, 405, 501].includes(error.status)) throw new FallBack(error.message);
      throw error;
    }
    const upload = await json<DirectUploadState>(response);
    upload.parts = [];
    this.upload = upload;
    if (upload.method === "multipart") {
      localStorage.setItem(this.key, JSON.stringify({ upload_id: upload.upload_id, filename: this.file.name }));
    }
    return upload;
  }

  private async post(upload: DirectUploadState): Promise<void> {
    const post = upload.post;
    if (!post) throw new ApiError(0, "ERROR", "The service gave no address to send the file to");
    const form = new FormData();
    for (const [name, value] of Object.entries(post.fields)) form.append(name, value);
    form.append("file", this.file); // Last: S3 ignores any field after the file.
    const size = this.file.size;
    const status = await this.transmit("POST", post.url, form, (loaded, total) =>
      // The form's fields are a few hundred bytes of the body: count the file's share only.
      this.report.progress(total > 0 ? Math.min(size, Math.round((loaded / total) * size)) : 0, size),
    );
    if (status >= 200 && status < 300) {
      this.report.progress(size, size);
      return;
    }
    await this.s3Failed(status, "the file");
  }

  private async sendParts(upload: DirectUploadState): Promise<void> {
    const held = new Set((upload.parts ?? []).map((part) => part.part_number));
    let done = (upload.parts ?? []).reduce((sum, part) => sum + part.size, 0);
    if (held.size > 0) this.reachedS3 = true; // S3 took parts of it from this browser before.
    const inFlight = new Map<number, number>();
    const show = (): void => {
      let sending = 0;
      for (const bytes of inFlight.values()) sending += bytes;
      this.report.progress(Math.min(this.file.size, done + sending), this.file.size);
    };
    show();
    const missing: number[] = [];
    for (let number = 1; number <= upload.part_count; number += 1) if (!held.has(number)) missing.push(number);
    for (let start = 0; start < missing.length; start += SIGN_BATCH) {
      const queue = await this.sign(upload, missing.slice(start, start + SIGN_BATCH));
      const worker = async (): Promise<void> => {
        for (;;) {
          const part = queue.shift();
          if (!part) return;
          const sent = await this.sendPart(upload, part, (loaded) => {
            inFlight.set(part.part_number, loaded);
            show();
          });
          inFlight.delete(part.part_number);
          done += sent;
          show();
        }
      };
      const workers = Array.from({ length: Math.min(PARTS_IN_FLIGHT, queue.length) }, worker);
      try {
        await Promise.all(workers);
      } catch (error) {
        // One part failed for good: the others stop too (S3 keeps what it has for a resume).
        for (const request of this.requests) request.abort();
        await Promise.allSettled(workers);
        throw error;
      }
    }
  }

  /** PUT one part, trying again as the comment on PART_ATTEMPTS says; its size once sent. */
  private async sendPart(upload: DirectUploadState, signed: SignedPart, progress: (loaded: number) => void): Promise<number> {
    let part = signed;
    const offset = (part.part_number - 1) * upload.part_size;
    // An untyped slice: no Content-Type, nothing but what the URL's signature names.
    const body = this.file.slice(offset, offset + part.size);
    for (let attempt = 1; ; attempt += 1) {
      const status = await this.transmit("PUT", part.url, body, (loaded) => progress(loaded));
      if (status === 200) return part.size;
      progress(0);
      if (this.stopped) throw new Stopped();
      if (status === 0 && !this.reachedS3) await this.s3Failed(status, `part ${part.part_number}`);
      const retry = status === 0 || status === 403 || status >= 500;
      if (!retry || attempt >= PART_ATTEMPTS) await this.s3Failed(status, `part ${part.part_number}`);
      if (status === 403) [part] = await this.sign(upload, [part.part_number]);
      await sleep(500 * attempt);
    }
  }

  /** What a failed request to S3 means: paused, out of reach (tus then), or a failure. */
  private async s3Failed(status: number, what: string): Promise<never> {
    if (this.stopped) throw new Stopped();
    if (status === 0 && !this.reachedS3) {
      s3Unreachable = true;
      await this.discard();
      throw new FallBack("S3 cannot be reached from this browser");
    }
    if (status === 0) throw new ApiError(0, "NETWORK", "The connection to S3 was lost");
    if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
      // Refused for good: the upload cannot go on, so the service removes it now.
      await this.discard();
    }
    throw new ApiError(status, "S3", `S3 refused ${what} (HTTP ${status})`);
  }

  private async sign(upload: DirectUploadState, numbers: number[]): Promise<SignedPart[]> {
    const response = await this.service("POST", `${ENDPOINT}/${upload.upload_id}/parts`, { part_numbers: numbers });
    return (await json<{ parts: SignedPart[] }>(response)).parts;
  }

  /** A request to the service with the token; a refusal throws its `ApiError`. */
  private async service(method: string, path: string, body?: unknown): Promise<Response> {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { "Content-Type": "application/json" };
    }
    // A pause does not cut the service's answers short: what it declared is kept for the resume,
    // and the next request to S3 stops (`transmit`).
    return call(this.session, path, init);
  }

  /** Send `body` to S3; its HTTP status, or 0 when there was no answer the page may read. */
  private transmit(
    method: string,
    url: string,
    body: Blob | FormData,
    progress: (loaded: number, total: number) => void,
  ): Promise<number> {
    if (this.stopped) return Promise.resolve(0);
    return new Promise((resolve) => {
      const request = new XMLHttpRequest();
      this.requests.add(request);
      const end = (): void => {
        this.requests.delete(request);
        if (request.status !== 0) this.reachedS3 = true;
        resolve(request.status);
      };
      request.upload.addEventListener("progress", (event) => progress(event.loaded, event.total));
      request.addEventListener("loadend", end);
      request.open(method, url);
      request.send(body);
    });
  }
}
