// A small SVG line of one feature's activation at every stored position (0 where it is not in
// that position's top-k), with the prompt/output boundary marked.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 140;
const HEIGHT = 26;

function svgNode(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

export function sparkline(entries, featureId) {
  const values = entries.map((entry) => {
    const hit = (entry.features || []).find((f) => f.feature_id === featureId);
    return hit ? hit.activation : 0;
  });
  const svg = svgNode("svg", {
    width: WIDTH,
    height: HEIGHT,
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    class: "spark",
    role: "img",
    "aria-label": `feature ${featureId} over ${values.length} positions`,
  });
  if (!values.length) return svg;
  const peak = Math.max(1e-9, ...values);
  const step = values.length > 1 ? (WIDTH - 2) / (values.length - 1) : 0;
  const points = values.map((v, i) => `${(1 + i * step).toFixed(1)},${(HEIGHT - 2 - (v / peak) * (HEIGHT - 4)).toFixed(1)}`);
  const lastX = (1 + (values.length - 1) * step).toFixed(1);
  svg.append(
    svgNode("polygon", { points: `1,${HEIGHT - 2} ${points.join(" ")} ${lastX},${HEIGHT - 2}`, class: "spark-area" }),
    svgNode("polyline", { points: points.join(" "), class: "spark-line" }),
  );
  const outputStart = entries.findIndex((e) => e.segment === "output");
  if (outputStart > 0) {
    const x = (1 + outputStart * step).toFixed(1);
    svg.append(svgNode("line", { x1: x, x2: x, y1: 0, y2: HEIGHT, class: "spark-split" }));
  }
  return svg;
}
