// How numbers, times and tokens are written on the page.

export function fmt(value) {
  return typeof value === "number" ? value.toFixed(3) : value ?? "";
}

export function formatTime(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

// Make whitespace visible without changing the text itself.
export function displayToken(token) {
  if (token === null || token === undefined) return "∅";
  if (token === "") return "∅";
  return token.replace(/\n/g, "↵").replace(/\t/g, "⇥");
}
