// Who is signed in: the token lives in sessionStorage, so it is kept for this browser tab only.

const TOKEN_KEY = "upload-service.token";

export interface Session {
  token: string;
  /** The token's `sub`: the user whose documents these are. */
  user: string;
}

/** The `sub` claim of a JWT, read without verifying it (the service verifies every request). */
export function subjectOf(token: string): string | null {
  const payload = token.split(".")[1];
  if (!payload) return null;
  try {
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    const claims: unknown = JSON.parse(json);
    if (typeof claims === "object" && claims !== null && "sub" in claims) {
      const sub = (claims as { sub: unknown }).sub;
      return typeof sub === "string" && sub !== "" ? sub : null;
    }
  } catch {
    // Not a JWT: the caller says so.
  }
  return null;
}

export function loadSession(): Session | null {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const user = token ? subjectOf(token) : null;
  return token && user ? { token, user } : null;
}

export function saveSession(token: string): Session | null {
  const user = subjectOf(token);
  if (!user) return null;
  sessionStorage.setItem(TOKEN_KEY, token);
  return { token, user };
}

export function clearSession(): void {
  sessionStorage.removeItem(TOKEN_KEY);
}
