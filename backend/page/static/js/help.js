// The "What am I looking at?" panel, opened from the header.
import { $ } from "./dom.js";

function setOpen(open) {
  $("help").hidden = !open;
  $("help-toggle").setAttribute("aria-expanded", String(open));
  if (open) $("help").scrollIntoView({ block: "nearest" });
}

export function wireHelp() {
  $("help-toggle").addEventListener("click", () => setOpen($("help").hidden));
  $("help-close").addEventListener("click", () => setOpen(false));
}
