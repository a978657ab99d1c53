// My documents: newest first, a page at a time as the reader scrolls, kept live by events.

import { type ApiError, type DocumentOut, deleteDocument, downloadDocument, listDocuments } from "./api";
import { byId, el } from "./dom";
import type { DocumentEvent } from "./events";
import { formatBytes, formatTime } from "./format";
import type { Session } from "./session";

const STATUS_TEXT: Record<DocumentOut["status"], string> = {
  queued: "Queued",
  processing: "Classifying…",
  complete: "Complete",
  failed: "Failed",
};

export class DocumentList {
  private readonly list = byId<HTMLUListElement>("documents");
  private readonly empty = byId("empty");
  private readonly more = byId("more");
  private readonly error = byId("documents-error");
  private readonly dialog = byId<HTMLDialogElement>("confirm-delete");
  private readonly rows = new Map<string, HTMLLIElement>();
  private cursor: string | null = null;
  private exhausted = false;
  private loading = false;
  private observer: IntersectionObserver | null = null;
  private generation = 0;

  constructor(private readonly session: Session) {}

  /** Read the first page again, and load the next whenever the end of the list comes into view. */
  async start(): Promise<void> {
    this.generation += 1;
    this.rows.clear();
    this.list.replaceChildren();
    this.cursor = null;
    this.exhausted = false;
    await this.loadMore();
    performance.mark("documents-rendered");
    this.observer?.disconnect();
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting)) void this.loadMore();
    });
    this.observer.observe(this.more);
  }

  stop(): void {
    this.observer?.disconnect();
    this.generation += 1;
  }

  apply(event: DocumentEvent): void {
    if (event.kind === "reset") void this.start();
    else if (event.kind === "deleted") this.remove(event.docId);
    else this.upsert(event.document);
  }

  private async loadMore(): Promise<void> {
    if (this.loading || this.exhausted) return;
    this.loading = true;
    const generation = this.generation;
    this.more.textContent = "Loading…";
    try {
      const page = await listDocuments(this.session, this.cursor);
      if (generation !== this.generation) return;
      this.error.textContent = "";
      // Events may have brought some of these already; the newer copy wins.
      for (const document of page.items) if (!this.rows.has(document.doc_id)) this.append(document);
      this.cursor = page.next_cursor;
      this.exhausted = page.next_cursor === null;
    } catch (error) {
      this.error.textContent = `Could not load your documents: ${(error as ApiError).message}`;
    } finally {
      this.loading = false;
      this.more.textContent = this.exhausted ? "" : "More as you scroll…";
      this.showEmptyState();
    }
  }

  private upsert(document: DocumentOut): void {
    const old = this.rows.get(document.doc_id);
    if (!old) {
      // Ids are time-ordered (ULIDs). One older than the last row loaded comes with a later page.
      const last = this.list.lastElementChild as HTMLElement | null;
      if (!this.exhausted && last && (last.dataset.docId ?? "") > document.doc_id) return;
    }
    const row = this.render(document);
    this.rows.set(document.doc_id, row);
    if (old) old.replaceWith(row);
    else this.insertByOrder(row, document.doc_id);
    this.showEmptyState();
  }

  private append(document: DocumentOut): void {
    const row = this.render(document);
    this.rows.set(document.doc_id, row);
    this.insertByOrder(row, document.doc_id);
  }

  private insertByOrder(row: HTMLLIElement, docId: string): void {
    for (const child of this.list.children) {
      if (((child as HTMLElement).dataset.docId ?? "") < docId) {
        child.before(row);
        return;
      }
    }
    this.list.append(row);
  }

  private remove(docId: string): void {
    this.rows.get(docId)?.remove();
    this.rows.delete(docId);
    this.showEmptyState();
  }

  private showEmptyState(): void {
    this.empty.hidden = this.list.children.length > 0 || this.loading;
  }

  private render(document: DocumentOut): HTMLLIElement {
    const label = document.classification
      ? `${document.classification.label} · ${Math.round(document.classification.confidence * 100)}%`
      : document.error
        ? document.error.message
        : "";
    const download = el("button", { type: "button", class: "quiet", "aria-label": `Download ${document.filename}` }, "Download");
    const remove = el("button", { type: "button", class: "quiet danger", "aria-label": `Delete ${document.filename}` }, "Delete");
    download.addEventListener("click", () => void this.download(document));
    remove.addEventListener("click", () => this.confirmDelete(document));
    return el(
      "li",
      { class: "document", "data-doc-id": document.doc_id, "data-status": document.status },
      el(
        "div",
        { class: "row" },
        el("span", { class: "name" }, document.filename),
        el("span", { class: `badge ${document.status}` }, STATUS_TEXT[document.status]),
      ),
      el(
        "div",
        { class: "row meta" },
        el("span", { class: "label" }, label),
        el("span", {}, `${formatBytes(document.size_bytes)} · `, el("time", { datetime: document.created_at }, formatTime(document.created_at))),
      ),
      el("div", { class: "row end actions" }, download, remove),
    );
  }

  private async download(document: DocumentOut): Promise<void> {
    try {
      const blob = await downloadDocument(this.session, document.doc_id);
      const url = URL.createObjectURL(blob);
      const link = el("a", { href: url, download: document.filename });
      link.click();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (error) {
      this.error.textContent = `Could not download ${document.filename}: ${(error as ApiError).message}`;
    }
  }

  private confirmDelete(document: DocumentOut): void {
    byId("confirm-name").textContent = document.filename;
    this.dialog.returnValue = "";
    this.dialog.addEventListener(
      "close",
      () => {
        if (this.dialog.returnValue === "delete") void this.delete(document);
      },
      { once: true },
    );
    this.dialog.showModal();
  }

  private async delete(document: DocumentOut): Promise<void> {
    try {
      await deleteDocument(this.session, document.doc_id);
      this.remove(document.doc_id); // The event says so too; whichever comes first.
    } catch (error) {
      this.error.textContent = `Could not delete ${document.filename}: ${(error as ApiError).message}`;
    }
  }
}
