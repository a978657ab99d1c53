// GET /v1/events read with fetch: EventSource cannot send the Authorization header.
//
// The stream is parsed as the Server-Sent Events format says (fields up to a blank line), and
// reconnects with Last-Event-ID after a drop, so changes made meanwhile are replayed.

import { authHeaders, type DocumentOut } from "./api";
import type { Session } from "./session";

export type DocumentEvent =
  | { kind: "updated"; document: DocumentOut }
  | { kind: "deleted"; docId: string }
  | { kind: "reset" };

const RETRY_MS = [500, 1000, 2000, 5000];

export interface EventStream {
  close(): void;
}

/** Follow the caller's document events until `close()`; `onEvent` gets each one as it lands. */
export function followEvents(
  session: Session,
  onEvent: (event: DocumentEvent) => void,
  onState: (live: boolean) => void,
): EventStream {
  const abort = new AbortController();
  let lastEventId: string | null = null;

  const dispatch = (name: string, data: string): void => {
    if (name === "reset") {
      onEvent({ kind: "reset" });
    } else if (name === "document.updated") {
      onEvent({ kind: "updated", document: JSON.parse(data) as DocumentOut });
    } else if (name === "document.deleted") {
      onEvent({ kind: "deleted", docId: (JSON.parse(data) as { doc_id: string }).doc_id });
    }
  };

  const readOnce = async (): Promise<void> => {
    const headers: Record<string, string> = { ...authHeaders(session), Accept: "text/event-stream" };
    if (lastEventId !== null) headers["Last-Event-ID"] = lastEventId;
    const response = await fetch("/v1/events", { headers, signal: abort.signal, cache: "no-store" });
    if (!response.ok || !response.body) throw new Error(`events: ${response.status}`);
    onState(true);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let name = "message";
    let data: string[] = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let newline: number;
      while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
        if (line === "") {
          if (data.length > 0) dispatch(name, data.join("\n"));
          name = "message";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue; // A keep-alive comment.
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") name = text;
        else if (field === "data") data.push(text);
        else if (field === "id") lastEventId = text;
      }
    }
  };

  void (async () => {
    let failures = 0;
    while (!abort.signal.aborted) {
      try {
        await readOnce();
        failures = 0;
      } catch {
        failures += 1;
      }
      onState(false);
      if (abort.signal.aborted) return;
      const wait = RETRY_MS[Math.min(failures, RETRY_MS.length - 1)];
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  })();

  return { close: () => abort.abort() };
}
