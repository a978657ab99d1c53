// The page: sign in, then uploads above and the caller's documents below, kept live.

import { type ApiError, checkToken, mintDevelopmentToken } from "./api";
import { DocumentList } from "./documents";
import { byId } from "./dom";
import { type EventStream, followEvents } from "./events";
import { type Session, clearSession, loadSession, saveSession } from "./session";
import { unfinishedUploads, uploadFiles } from "./uploads";
import "./style.css";

const signInSection = byId("sign-in");
const signedIn = byId("signed-in");
const signInError = byId("sign-in-error");
const live = byId("live");

let documents: DocumentList | null = null;
let events: EventStream | null = null;

function showSignIn(message = ""): void {
  events?.close();
  documents?.stop();
  events = null;
  documents = null;
  signedIn.hidden = true;
  byId("who").hidden = true;
  signInSection.hidden = false;
  signInError.textContent = message;
  byId("token").focus();
}

async function enter(session: Session): Promise<void> {
  try {
    await checkToken(session);
  } catch (error) {
    clearSession();
    showSignIn(`Sign-in refused: ${(error as ApiError).message}`);
    return;
  }
  signInSection.hidden = true;
  signedIn.hidden = false;
  byId("who").hidden = false;
  byId("who-name").textContent = session.user;
  documents = new DocumentList(session);
  const list = documents;
  events = followEvents(
    session,
    (event) => list.apply(event),
    (isLive) => {
      live.textContent = isLive ? "Live" : "Reconnecting…";
    },
  );
  void list.start();
  void showUnfinished(session);
  wireUploads(session);
}

async function showUnfinished(session: Session): Promise<void> {
  const unfinished = await unfinishedUploads(session.user);
  const note = byId("unfinished");
  note.hidden = unfinished.length === 0;
  note.textContent = `Unfinished: ${unfinished.join(", ")}. Drop or choose the same file again to resume where it stopped.`;
}

let uploadsWired = false;
let currentSession: Session | null = null;

function wireUploads(session: Session): void {
  currentSession = session;
  if (uploadsWired) return;
  uploadsWired = true;
  const zone = byId("drop-zone");
  const input = byId<HTMLInputElement>("file-input");
  const list = byId("uploads");
  const start = (files: FileList | null): void => {
    if (!files || files.length === 0 || !currentSession) return;
    const session = currentSession;
    uploadFiles(files, session, list, () => void showUnfinished(session));
  };
  byId("choose").addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    start(input.files);
    input.value = "";
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    start(event.dataTransfer?.files ?? null);
  });
}

byId<HTMLFormElement>("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = byId<HTMLTextAreaElement>("token").value.trim();
  const session = saveSession(token);
  if (!session) {
    showSignIn("That is not a token with a user (a JWT with a sub claim).");
    return;
  }
  void enter(session);
});

const devForm = byId<HTMLFormElement>("dev-form");
devForm.hidden = document.querySelector('meta[name="dev-sign-in"]')?.getAttribute("content") !== "on";
devForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const user = byId<HTMLInputElement>("dev-user").value.trim();
  void mintDevelopmentToken(user)
    .then((token) => {
      const session = saveSession(token);
      if (session) void enter(session);
    })
    .catch((error: ApiError) => showSignIn(`Development sign-in failed: ${error.message}`));
});

byId("sign-out").addEventListener("click", () => {
  clearSession();
  showSignIn();
});

const session = loadSession();
if (session) void enter(session);
else showSignIn();
