"""The style sheet and scripts of ``report/index.html``, inlined into the page (it loads nothing).

``SORT_JS`` defines ``sortTable(table, col)``: a click on a column header sorts the rows by that column,
ascending, and a second click descending. A cell's ``data-v`` (set by
:func:`harness.analysis.report.html.sort_value`
for cells that start with a number) sorts numerically; other cells sort as text with numbers inside
compared by value ("k2" before "k10"); empty and "—" cells stay last either way. ``PAGE_JS`` wires the
headers to ``sortTable``, the filters (a text box per suite over the variant, a select over the claims'
verdicts: rows whose key does not match are hidden) and the language buttons. They are separate so a
test can replace the sort with a broken one and see the browser test catch it.
"""

from __future__ import annotations

__all__ = ["CSS", "PAGE_JS", "SORT_JS"]

CSS = """
:root { --fg: #1d2327; --muted: #5f6b74; --line: #d5dbe0; --head: #eef2f5; --accent: #1f5f99;
        --bar: #16324a; }
* { box-sizing: border-box; }
html { scroll-padding-top: 4.5rem; }
body { margin: 0; color: var(--fg); font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "Noto Sans",
       "Noto Sans CJK SC", sans-serif; background: #fff; }
html[data-lang="en"] .l-zh, html[data-lang="zh"] .l-en { display: none !important; }
header.bar { position: sticky; top: 0; z-index: 5; display: flex; gap: 1rem; align-items: center;
             flex-wrap: wrap; padding: .45rem 1rem; background: var(--bar); color: #fff; }
header.bar .brand { font-weight: 600; white-space: nowrap; }
header.bar nav { display: flex; flex-wrap: wrap; gap: .2rem .8rem; flex: 1; font-size: 13px; }
header.bar nav a { color: #cfe3f5; text-decoration: none; white-space: nowrap; }
header.bar nav a:hover { color: #fff; text-decoration: underline; }
.langs button { border: 1px solid #8fb3d1; background: transparent; color: #fff; padding: .15rem .6rem;
                border-radius: 3px; cursor: pointer; font: inherit; font-size: 13px; }
.langs button.on { background: #fff; color: var(--bar); }
main { padding: 0 1.2rem 3rem; max-width: 1800px; margin: 0 auto; }
section.sec { border-top: 1px solid var(--line); margin-top: 1.6rem; }
section.sec-intro { border-top: 0; }
h1 { font-size: 1.6rem; margin: 1rem 0 .6rem; }
h2 { font-size: 1.3rem; margin: 1.2rem 0 .5rem; }
h3 { font-size: 1.05rem; margin: 1.3rem 0 .4rem; }
p { margin: .45rem 0; max-width: 110ch; }
code { font: 12.5px/1.3 ui-monospace, "DejaVu Sans Mono", monospace; background: #f2f4f6;
       padding: 0 .25em; border-radius: 3px; }
a { color: var(--accent); }
.controls { padding: .4rem 0; display: flex; gap: 1rem; align-items: center; flex-wrap: wrap;
            font-size: 14px; }
.controls input, .controls select { font: inherit; padding: .15rem .4rem; border: 1px solid #9aa7b1;
                                    border-radius: 3px; min-width: 16rem; }
.muted { color: var(--muted); font-size: 13px; }
.tw { overflow-x: auto; margin: .5rem 0 .8rem; border: 1px solid var(--line); border-radius: 4px; }
table { border-collapse: collapse; font-size: 13px; min-width: 100%; }
th, td { border-bottom: 1px solid var(--line); padding: .3rem .5rem; text-align: left;
         vertical-align: top; }
td + td, th + th { border-left: 1px solid #eef0f2; }
thead th { position: sticky; top: 0; background: var(--head); cursor: pointer; user-select: none;
           white-space: nowrap; font-weight: 600; }
thead th:hover { background: #dde6ee; }
thead th .arrow { color: var(--muted); padding-left: .25em; font-size: 11px; }
thead th[aria-sort="ascending"] .arrow::after { content: "▲"; color: var(--accent); }
thead th[aria-sort="descending"] .arrow::after { content: "▼"; color: var(--accent); }
thead th:not([aria-sort]) .arrow::after { content: "↕"; }
tbody tr:nth-child(even) { background: #fafbfc; }
tbody tr:hover { background: #f0f6fb; }
td.num { white-space: nowrap; font-variant-numeric: tabular-nums; }
table:not(.wide) td { white-space: nowrap; }
table.wide td { overflow-wrap: break-word; }
table.wide td:not(.num):not(.fold) { min-width: 8rem; }
table.wide td.fold { min-width: 15rem; }
table.wide td.fold.prose { min-width: 9rem; max-width: 16rem; }
tr[data-key="supported"] td:nth-child(4) { color: #1a7f37; }
tr[data-key="contradicted"] td:nth-child(4) { color: #b42318; }
tr[data-key="not separable"] td:nth-child(4), tr[data-key="uninformative"] td:nth-child(4) { color: #9a6700; }
tr[data-key="not measured"] td:nth-child(4) { color: var(--muted); }
details summary { cursor: pointer; color: var(--fg); }
details summary::marker { color: var(--accent); }
details[open] > summary .pv { display: none; }  /* unfolded: the whole text only, not its start twice */
figure { margin: .6rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
ul { margin: .4rem 0; padding-left: 1.4rem; }
.empty { color: var(--muted); font-style: italic; }
"""

SORT_JS = r"""
const collator = new Intl.Collator(undefined, {numeric: true, sensitivity: "base"});
function sortKey(row, col) {
  const td = row.cells[col];
  if (!td) return [2, 0, ""];
  if (td.dataset.v !== undefined) return [0, parseFloat(td.dataset.v), ""];
  const text = td.textContent.trim();
  return (text === "" || text === "\u2014") ? [2, 0, ""] : [1, 0, text];
}
function sortTable(table, col) {
  const asc = !(table.dataset.sortCol === String(col) && table.dataset.sortDir === "asc");
  const body = table.tBodies[0];
  const keyed = Array.from(body.rows, (row, i) => [sortKey(row, col), i, row]);
  keyed.sort((a, b) => {
    const [ka, kb] = [a[0], b[0]];
    if (ka[0] === 2 || kb[0] === 2) return (ka[0] === 2) - (kb[0] === 2) || a[1] - b[1];
    let c = ka[0] - kb[0];
    if (c === 0) c = ka[0] === 0 ? ka[1] - kb[1] : collator.compare(ka[2], kb[2]);
    return c === 0 ? a[1] - b[1] : (asc ? c : -c);
  });
  for (const k of keyed) body.appendChild(k[2]);
  table.dataset.sortCol = String(col);
  table.dataset.sortDir = asc ? "asc" : "desc";
  Array.from(table.tHead.rows[0].cells).forEach((th, i) => {
    if (i === col) th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    else th.removeAttribute("aria-sort");
  });
}
"""

PAGE_JS = r"""
function rowMatches(row, test) {
  return test(String(row.dataset.key || "").toLowerCase());
}
function applyFilter(section, test) {
  let shown = 0, total = 0;
  section.querySelectorAll("table[data-filter] tbody tr").forEach(row => {
    const ok = rowMatches(row, test);
    row.hidden = !ok;
    if (!row.closest(".l-en, .l-zh") || row.closest(".l-" + document.documentElement.dataset.lang)) {
      total += 1; shown += ok ? 1 : 0;
    }
  });
  section.querySelectorAll(".shown").forEach(el => { el.textContent = shown + " / " + total; });
}
function textTest(value) {
  const terms = value.toLowerCase().split(/[\s,]+/).filter(Boolean);
  return key => terms.length === 0 || terms.some(t => key.includes(t));
}
function setLang(lang) {
  const root = document.documentElement;
  root.dataset.lang = lang;
  root.lang = lang;
  document.querySelectorAll("[data-set-lang]").forEach(b => {
    b.classList.toggle("on", b.dataset.setLang === lang);
  });
  document.querySelectorAll("option[data-" + lang + "]").forEach(o => { o.textContent = o.dataset[lang]; });
  document.querySelectorAll("input[data-" + lang + "]").forEach(i => { i.placeholder = i.dataset[lang]; });
  document.querySelectorAll("section[data-kind]").forEach(refilter);
}
function refilter(section) {
  const box = section.querySelector("input.filter");
  const sel = section.querySelector("select.filter");
  if (box) applyFilter(section, textTest(box.value));
  else if (sel) applyFilter(section, key => sel.value === "" || key === sel.value);
}
document.querySelectorAll("table.sortable thead th").forEach(th => {
  const sort = () => sortTable(th.closest("table"), th.cellIndex);
  th.addEventListener("click", sort);
  th.addEventListener("keydown", e => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); }
  });
});
document.querySelectorAll("input.filter, select.filter").forEach(el => {
  for (const ev of ["input", "change"]) el.addEventListener(ev, () => refilter(el.closest("section")));
});
document.querySelectorAll("[data-set-lang]").forEach(b => {
  b.addEventListener("click", () => setLang(b.dataset.setLang));
});
setLang(document.documentElement.dataset.lang);
"""
