// The service's public API, as any REST client sees it: the page never uses anything else.

import type { Session } from "./session";

export interface Classification {
  label: string;
  confidence: number;
  model_version: string;
}

export interface DocumentOut {
  doc_id: string;
  status: "queued" | "processing" | "complete" | "failed";
  filename: string;
  content_type: string;
  size_bytes: number;
  created_at: string;
  updated_at: string;
  classification: Classification | null;
  error: { code: string; message: string } | null;
}

export interface DocumentPage {
  items: DocumentOut[];
  next_cursor: string | null;
}

/** An answer of the service in its error envelope (or a network failure, status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly errorCode: string,
    message: string,
  ) {
    super(message);
  }
}

/** The message of an error envelope's body, or a plain line when the body is not one. */
export function errorFromBody(status: number, body: string): ApiError {
  try {
    const parsed: unknown = JSON.parse(body);
    if (typeof parsed === "object" && parsed !== null && "message" in parsed) {
      const envelope = parsed as { message: unknown; error_code?: unknown };
      return new ApiError(
        status,
        typeof envelope.error_code === "string" ? envelope.error_code : "ERROR",
        String(envelope.message),
      );
    }
  } catch {
    // Not JSON: fall through to the status line.
  }
  return new ApiError(status, "ERROR", status ? `The service answered ${status}` : "No answer from the service");
}

export function authHeaders(session: Session): Record<string, string> {
  return { Authorization: `Bearer ${session.token}` };
}

/** A request to the service with the token; a refusal throws its `ApiError`. */
export async function call(session: Session, path: string, init: RequestInit = {}): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(path, { ...init, headers: { ...authHeaders(session), ...init.headers } });
  } catch {
    throw new ApiError(0, "NETWORK", "No answer from the service");
  }
  if (!response.ok) throw errorFromBody(response.status, await response.text());
  return response;
}

export async function listDocuments(session: Session, cursor: string | null, limit = 20): Promise<DocumentPage> {
  const query = new URLSearchParams({ limit: String(limit) });
  if (cursor) query.set("cursor", cursor);
  return (await call(session, `/v1/documents?${query}`)).json() as Promise<DocumentPage>;
}

export async function deleteDocument(session: Session, docId: string): Promise<void> {
  await call(session, `/v1/documents/${encodeURIComponent(docId)}`, { method: "DELETE" });
}

export async function downloadDocument(session: Session, docId: string): Promise<Blob> {
  return (await call(session, `/v1/documents/${encodeURIComponent(docId)}/content`)).blob();
}

/** A development token for `user`; null when the service offers no development sign-in. */
export async function mintDevelopmentToken(user: string): Promise<string> {
  const response = await fetch("/v1/dev/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user }),
  });
  if (!response.ok) throw errorFromBody(response.status, await response.text());
  const body = (await response.json()) as { access_token: string };
  return body.access_token;
}

/** Whether `token` is accepted: one cheap authenticated read. */
export async function checkToken(session: Session): Promise<void> {
  await listDocuments(session, null, 1);
}
