// The Feature card's histogram: the positions at which a feature fired, by activation (fixed
// log-spaced bins, the non-empty span shown), with both axes labelled and each bar's count.
import { el } from "./dom.js";
import { fmt } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 340;
const HEIGHT = 120;
const LEFT = 38; // y-axis labels
const BOTTOM = 30; // x-axis labels and title
const TOP = 12; // counts above the bars

function node(tag, attrs, text) {
  const n = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) n.setAttribute(key, String(value));
  if (text !== undefined) n.textContent = text;
  return n;
}

const short = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toPrecision(2));

export function histogram({ edges, counts }) {
  let first = counts.findIndex((c) => c > 0);
  if (first < 0) return el("p", { class: "muted" }, "Never fired in a stored run.");
  let last = counts.length - 1;
  while (counts[last] === 0) last -= 1;
  first = Math.max(0, first - 1);
  last = Math.min(counts.length - 1, last + 1);
  const shown = counts.slice(first, last + 1);
  const peak = Math.max(...shown);
  const plotW = WIDTH - LEFT - 4;
  const plotH = HEIGHT - BOTTOM - TOP;
  const bar = plotW / shown.length;
  const svg = node("svg", {
    width: WIDTH,
    height: HEIGHT,
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    class: "histogram",
    role: "img",
    "aria-label": `activation histogram from ${fmt(edges[first])} to ${fmt(edges[last + 1])}, at most ${peak} positions in a bin`,
  });
  const base = TOP + plotH;
  // Axes: counts (0 and the peak) up the left, activations along the bottom.
  svg.append(
    node("line", { x1: LEFT, y1: TOP, x2: LEFT, y2: base, class: "hist-axis" }),
    node("line", { x1: LEFT, y1: base, x2: WIDTH - 4, y2: base, class: "hist-axis" }),
    node("text", { x: LEFT - 4, y: TOP + 4, class: "hist-tick", "text-anchor": "end" }, String(peak)),
    node("text", { x: LEFT - 4, y: base, class: "hist-tick", "text-anchor": "end" }, "0"),
    node("text", { x: 8, y: TOP + plotH / 2, class: "hist-title", transform: `rotate(-90 8 ${TOP + plotH / 2})`, "text-anchor": "middle" }, "positions"),
  );
  const ticks = [0, Math.floor(shown.length / 2), shown.length];
  for (const i of ticks) {
    const x = LEFT + i * bar;
    svg.append(node("text", { x, y: base + 12, class: "hist-tick", "text-anchor": i === 0 ? "start" : i === shown.length ? "end" : "middle" }, short(edges[first + i])));
  }
  svg.append(node("text", { x: LEFT + plotW / 2, y: HEIGHT - 3, class: "hist-title", "text-anchor": "middle" }, "activation (log scale)"));
  shown.forEach((count, i) => {
    const h = count ? Math.max(1, (count / peak) * plotH) : 0;
    const x = LEFT + i * bar;
    const rect = node("rect", { x: x.toFixed(1), y: (base - h).toFixed(1), width: Math.max(1, bar - 1).toFixed(1), height: h.toFixed(1), class: "hist-bar" });
    rect.append(node("title", {}, `${fmt(edges[first + i])}–${fmt(edges[first + i + 1])}: ${count} positions`));
    svg.append(rect);
    if (count && bar >= 12) {
      svg.append(node("text", { x: (x + bar / 2).toFixed(1), y: (base - h - 2).toFixed(1), class: "hist-count", "text-anchor": "middle" }, String(count)));
    }
  });
  return el(
    "figure",
    { class: "hist" },
    svg,
    el("figcaption", { class: "muted" }, `How often it fired, by activation: ${shown.reduce((a, b) => a + b, 0)} positions in stored runs, from ${fmt(edges[first])} to ${fmt(edges[last + 1])}.`),
  );
}
