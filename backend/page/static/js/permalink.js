// The open run lives in the address bar as ?run=<id>: a link that can be shared, and one the
// server answers with Open Graph tags naming the run. #run=<id>, the older form, is still read.

export function runIdFromLocation() {
  const fromQuery = new URLSearchParams(location.search).get("run");
  if (fromQuery) return fromQuery;
  const match = location.hash.match(/^#run=(.+)$/);
  if (!match) return null;
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return null; // a malformed %-escape: open no run rather than fail to start
  }
}

export function showRunInLocation(requestId) {
  const url = new URL(location.href);
  url.searchParams.set("run", requestId);
  url.hash = "";
  history.replaceState(null, "", url);
}
