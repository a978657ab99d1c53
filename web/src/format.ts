// How numbers and times read on the page.

const UNITS = ["B", "KB", "MB", "GB"];

/** A byte count the way people read it: 1.2 MB. */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${UNITS[unit]}`;
}

/** A transfer speed: 3.4 MB/s. */
export function formatSpeed(bytesPerSecond: number): string {
  return `${formatBytes(Math.max(0, Math.round(bytesPerSecond)))}/s`;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** A timestamp of the API (ISO 8601, UTC) in the reader's own time zone. */
export function formatTime(iso: string): string {
  return timeFormat.format(new Date(iso));
}
