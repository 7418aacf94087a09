"""The review page: each note's text with its spans highlighted, gold against system, in one HTML file.

The page is self-contained: its style and script are inline, the notes are a JSON block inside it,
and a Content-Security-Policy (`default-src 'none'`) forbids every network request, so opening it
sends nothing anywhere (the notes are PHI). It is written atomically with mode 0600.

What it shows: a PHI warning, the metric tables (the report's numbers), a legend (one colour per type;
one border style per outcome), a list of notes, worst first (most spans that are not exact matches),
paged 200 at a time, and one note at a time (rendered when chosen, so thousands of notes stay
usable): its text twice, gold spans on the left and system spans on the right, or the system spans
alone when there is no gold (`predict.py --output_format=html`).

Outcomes, per span (exact match = same start, end and type):
  tp        an exact match (both sides);
  boundary  overlaps a span of the same type on the other side, with other boundaries;
  type      overlaps only spans of other types on the other side;
  fp        a system span that overlaps no gold span;  fn  a gold span no system span overlaps;
  pred      a system span when there is no gold.
Each span is one `<mark class="span t<type index> <outcome>" data-type=... data-outcome=...>`;
overlapping spans of one side nest (a span crossing the end of the one it starts in is cut there).

Navigation: clicking a note in the list shows it and sets the address's `#note=<id>`; loading the page
with `#note=<id>` shows that note (a link to a note can be shared), `#page=<n>` opens a list page;
j / k (or the arrow keys) step through the notes in the list's order; the box above the list jumps to
a note by id.
"""

import bisect
import json
import os

from clinicalbert_tf import fileio

PAGE_SIZE = 200

# Light, mutually distinguishable backgrounds (Kelly's and Glasbey's colours, lightened); types past
# the 20th get golden-angle hues.
_PALETTE = ("#ffd966", "#9fc5e8", "#b6d7a8", "#f4cccc", "#d9d2e9", "#f9cb9c", "#a2e3e0",
            "#e6b8af", "#d5e8a0", "#c9daf8", "#ffe599", "#ead1dc", "#b4a7d6", "#cfe2f3",
            "#fce5cd", "#d0e0e3", "#e0f2a6", "#f1c0e8", "#bcd4b4", "#ffc4a3")

OUTCOMES = (("tp", "true positive: exact match"),
            ("boundary", "boundary error: same type, other start or end"),
            ("type", "type error: overlaps a span of another type"),
            ("fp", "false positive: system span over no gold span"),
            ("fn", "false negative: gold span no system span touches"),
            ("pred", "predicted span (no gold to compare with)"))


def type_colour(index):
  if index < len(_PALETTE):
    return _PALETTE[index]
  return "hsl(%d, 70%%, 82%%)" % ((index * 137.508) % 360)


def page_spans(note):
  """A readers.Note's spans as (start, end, type) for the page."""
  return [(s.start, s.end, s.type) for s in note.spans]


class _Overlaps(object):
  """Answers "does [s, e) overlap one of these spans (of this type)?" in O(log n) per question:
  spans sorted by start with the running maximum of their ends (a span starting before e overlaps
  iff its end is after s, so the maximum end among those starting before e decides)."""

  def __init__(self, spans):
    self.index = {}
    for key, group in [(None, spans)] + [(t, [x for x in spans if x[2] == t])
                                         for t in {x[2] for x in spans}]:
      group = sorted(group)
      starts, max_ends, running = [], [], -1
      for x in group:
        running = max(running, x[1])
        starts.append(x[0])
        max_ends.append(running)
      self.index[key] = (starts, max_ends)

  def any(self, start, end, typ=None):
    if typ not in self.index:
      return False
    starts, max_ends = self.index[typ]
    n = bisect.bisect_left(starts, end)
    return n > 0 and max_ends[n - 1] > start


def classify(gold, system):
  """(gold outcomes, system outcomes), one per span, as the module doc defines them."""

  def outcomes(spans, others, missing):
    exact = {tuple(o) for o in others}
    index = _Overlaps(others)
    result = []
    for s in spans:
      if tuple(s) in exact:
        result.append("tp")
      elif index.any(s[0], s[1], s[2]):
        result.append("boundary")
      elif index.any(s[0], s[1]):
        result.append("type")
      else:
        result.append(missing)
    return result

  return outcomes(gold, system, "fn"), outcomes(system, gold, "fp")


def note_counts(gold_outcomes, system_outcomes):
  """The list's per-note numbers: exact matches (tp), unmatched system (fp) and gold (fn) spans,
  and the spans on either side that are boundary or type errors."""
  return {
      "tp": system_outcomes.count("tp"),
      "fp": sum(o != "tp" for o in system_outcomes),
      "fn": sum(o != "tp" for o in gold_outcomes),
      "boundary": gold_outcomes.count("boundary") + system_outcomes.count("boundary"),
      "type": gold_outcomes.count("type") + system_outcomes.count("type"),
  }


def page_data(notes):
  """The JSON the page's script reads: types, and per note its text, spans and counts (worst
  first)."""
  notes = list(notes)
  has_gold = any(n[2] is not None for n in notes)
  types = sorted({s[2] for n in notes for side in (n[2] or [], n[3]) for s in side})
  index = {t: i for i, t in enumerate(types)}
  records = []
  for note_id, text, gold, system in notes:
    gold = sorted(gold or [], key=lambda s: (s[0], -s[1], s[2]))
    system = sorted(system, key=lambda s: (s[0], -s[1], s[2]))
    if has_gold:
      gold_outcomes, system_outcomes = classify(gold, system)
    else:
      gold_outcomes, system_outcomes = [], ["pred"] * len(system)
    counts = note_counts(gold_outcomes, system_outcomes)
    counts["gold"], counts["system"] = len(gold), len(system)
    records.append({
        "id": str(note_id), "text": text,
        "gold": [[s[0], s[1], index[s[2]], o] for s, o in zip(gold, gold_outcomes)],
        "system": [[s[0], s[1], index[s[2]], o] for s, o in zip(system, system_outcomes)],
        "counts": counts,
        "errors": counts["fp"] + counts["fn"],
    })
  if has_gold:
    records.sort(key=lambda r: (-r["errors"], r["id"]))
  return {"types": types, "has_gold": has_gold, "notes": records, "page_size": PAGE_SIZE}


def _escape(text):
  return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
          .replace('"', "&quot;"))


def _tables_html(metrics):
  out = []
  for title, header, rows in metrics or []:
    out.append('<table class="metrics"><caption>%s</caption><thead><tr>%s</tr></thead><tbody>' % (
        _escape(title), "".join("<th>%s</th>" % _escape(h) for h in header)))
    for row in rows:
      out.append("<tr>%s</tr>" % "".join(
          '<td data-column="%s">%s</td>' % (_escape(h), _escape(v)) for h, v in zip(header, row)))
    out.append("</tbody></table>")
  return "\n".join(out)


def _legend_html(types, has_gold):
  swatches = "".join('<span class="swatch t%d">%s</span>' % (i, _escape(t))
                     for i, t in enumerate(types))
  outcomes = "".join('<span class="swatch %s" title="%s">%s</span>' % (name, _escape(what),
                                                                        _escape(what))
                     for name, what in OUTCOMES if (name == "pred") != has_gold)
  return ('<div id="legend"><div><b>Types</b> %s</div><div><b>Outcomes</b> %s</div></div>' %
          (swatches, outcomes))


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;
 color:#1f2328;background:#fff}
header{padding:8px 16px;border-bottom:1px solid #d0d7de}
h1{font-size:20px;margin:4px 0}
.phi-warning{background:#cf222e;color:#fff;padding:8px 16px;font-weight:600}
table.metrics{border-collapse:collapse;margin:8px 16px 8px 0;display:inline-table;font-size:13px}
table.metrics caption{text-align:left;font-weight:600;padding:2px 0}
table.metrics th,table.metrics td{border:1px solid #d0d7de;padding:2px 8px;text-align:right}
table.metrics th:first-child,table.metrics td:first-child{text-align:left}
#legend{font-size:13px;margin:8px 0;line-height:2}
.swatch{display:inline-block;padding:0 6px;margin:0 4px 2px 0;border-radius:3px;
 border:2px solid transparent;background:#f6f8fa}
#layout{display:flex;align-items:flex-start}
#notes{width:260px;min-width:260px;border-right:1px solid #d0d7de;height:calc(100vh - 40px);
 overflow:auto;position:sticky;top:0;font-size:13px}
#pager{padding:6px;border-bottom:1px solid #d0d7de}
#note-list{list-style:none;margin:0;padding:0}
#list-head{color:#57606a;padding-top:4px}
#find{width:100%;box-sizing:border-box;margin-top:4px}
#note-list li{padding:3px 8px;cursor:pointer;border-bottom:1px solid #f0f0f0;display:flex;
 justify-content:space-between}
#note-list li.current{background:#ddf4ff;font-weight:600}
.n-tp{color:#1a7f37}.n-fp,.n-fn{color:#cf222e}
#note-view{flex:1;padding:8px 16px;min-width:0}
.panes{display:flex;gap:16px}
.pane{flex:1;min-width:0}
.pane pre{white-space:pre-wrap;word-wrap:break-word;font:13px/1.9 ui-monospace,Menlo,Consolas,
 monospace;border:1px solid #d0d7de;padding:8px;margin:0}
mark.span{color:inherit;border-radius:3px;padding:1px 0;border:2px solid transparent}
mark.span[data-type]:hover::after{content:" " attr(data-type);font-size:10px;font-weight:600}
.tp{border:2px solid #1a7f37!important}
.fp{border:2px dashed #cf222e!important}
.fn{border:2px dotted #cf222e!important;box-shadow:inset 0 -3px 0 #cf222e}
.boundary{border:3px double #bf8700!important}
.type{border:2px solid #8250df!important;text-decoration:underline wavy #8250df}
.pred{border:1px solid #57606a!important}
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("page-data").textContent);
  var byId = {};
  data.notes.forEach(function (n, i) { byId[n.id] = i; });
  var page = 0, current = null;
  var list = document.getElementById("note-list");

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // The note's text with its spans as nested <mark>s (a span crossing its parent's end is cut).
  function renderText(container, text, spans) {
    container.textContent = "";
    var stack = [{end: text.length, node: container}], pos = 0;
    function closeUntil(limit) {
      while (stack.length > 1 && stack[stack.length - 1].end <= limit) {
        var top = stack.pop();
        top.node.appendChild(document.createTextNode(text.slice(pos, top.end)));
        pos = top.end;
      }
    }
    spans.forEach(function (s) {
      var start = s[0], end = s[1];
      closeUntil(start);
      var parent = stack[stack.length - 1];
      if (start < pos) start = pos;
      if (end > parent.end) end = parent.end;
      parent.node.appendChild(document.createTextNode(text.slice(pos, start)));
      pos = start;
      var m = el("mark", "span t" + s[2] + " " + s[3]);
      m.setAttribute("data-type", data.types[s[2]]);
      m.setAttribute("data-outcome", s[3]);
      m.setAttribute("data-start", s[0]);
      m.setAttribute("data-end", s[1]);
      m.title = data.types[s[2]] + " (" + s[3] + ") " + s[0] + "-" + s[1];
      parent.node.appendChild(m);
      stack.push({end: end, node: m});
    });
    closeUntil(text.length);
    container.appendChild(document.createTextNode(text.slice(pos)));
  }

  function showNote(id) {
    var i = byId[id];
    if (i === undefined) return false;
    var n = data.notes[i];
    current = n.id;
    if (Math.floor(i / data.page_size) !== page) { page = Math.floor(i / data.page_size); renderList(); }
    document.getElementById("note-title").textContent = n.id;
    var c = n.counts;
    document.getElementById("note-counts").textContent = data.has_gold ?
        ("gold " + c.gold + ", system " + c.system + ": exact " + c.tp + ", FP " + c.fp + ", FN " +
         c.fn + ", boundary " + c.boundary + ", type " + c.type) : ("spans " + c.system);
    if (data.has_gold) renderText(document.getElementById("gold-text"), n.text, n.gold);
    renderText(document.getElementById("system-text"), n.text, n.system);
    Array.prototype.forEach.call(list.children, function (li) {
      li.classList.toggle("current", li.getAttribute("data-id") === n.id);
    });
    document.body.setAttribute("data-current", n.id);
    return true;
  }

  function renderList() {
    list.textContent = "";
    var from = page * data.page_size, to = Math.min(data.notes.length, from + data.page_size);
    data.notes.slice(from, to).forEach(function (n) {
      var li = el("li");
      li.setAttribute("data-id", n.id);
      ["tp", "fp", "fn"].forEach(function (k) { li.setAttribute("data-" + k, n.counts[k]); });
      li.appendChild(el("span", "n-id", n.id));
      var counts = el("span", "n-counts");
      if (data.has_gold) {
        counts.appendChild(el("span", "n-tp", String(n.counts.tp)));
        counts.appendChild(document.createTextNode(" / "));
        counts.appendChild(el("span", "n-fp", String(n.counts.fp)));
        counts.appendChild(document.createTextNode(" / "));
        counts.appendChild(el("span", "n-fn", String(n.counts.fn)));
      } else {
        counts.appendChild(el("span", "n-system", String(n.counts.system)));
      }
      li.appendChild(counts);
      li.addEventListener("click", function () {
        showNote(n.id);
        history.replaceState(null, "", "#note=" + encodeURIComponent(n.id));
      });
      if (n.id === current) li.classList.add("current");
      list.appendChild(li);
    });
    var pages = Math.max(1, Math.ceil(data.notes.length / data.page_size));
    document.getElementById("page-label").textContent = "page " + (page + 1) + " of " + pages +
        " (" + data.notes.length + " notes)";
    document.getElementById("prev").disabled = page === 0;
    document.getElementById("next").disabled = page >= pages - 1;
  }

  document.getElementById("prev").addEventListener("click", function () { page--; renderList(); });
  document.getElementById("next").addEventListener("click", function () { page++; renderList(); });

  function fromHash() {
    var params = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      var p = kv.split("=");
      if (p[0]) params[p[0]] = decodeURIComponent(p.slice(1).join("="));
    });
    if (params.page) { page = Math.max(0, parseInt(params.page, 10) - 1) || 0; }
    renderList();
    if (params.click) {
      // What a click on the list does (for tests that load the page without a pointer).
      var li = list.querySelector('li[data-id="' + params.click.replace(/"/g, '\\"') + '"]');
      if (li) li.click();
    } else if (!(params.note && showNote(params.note)) && data.notes.length) {
      showNote(data.notes[page * data.page_size] ? data.notes[page * data.page_size].id :
               data.notes[0].id);
    }
  }
  // Keyboard: j / k (or the arrow keys) show the next / previous note of the list's order.
  document.addEventListener("keydown", function (event) {
    if (event.target && event.target.tagName === "INPUT") return;
    var step = {j: 1, ArrowDown: 1, k: -1, ArrowUp: -1}[event.key];
    if (!step || current === null) return;
    var next = data.notes[byId[current] + step];
    if (next) {
      event.preventDefault();
      showNote(next.id);
      history.replaceState(null, "", "#note=" + encodeURIComponent(next.id));
    }
  });
  document.getElementById("find").addEventListener("change", function (event) {
    if (showNote(event.target.value.trim())) {
      history.replaceState(null, "", "#note=" + encodeURIComponent(current));
    }
  });
  window.addEventListener("hashchange", fromHash);
  fromHash();
})();
"""


def render_page(notes, metrics=None, title="Span review"):
  """The review page as one HTML string.

  Args:
    notes: iterable of (note_id, text, gold_spans or None, system_spans); spans are (start, end,
      type) character offsets. With no gold anywhere the page shows the system spans alone.
    metrics: [(title, header, rows)] tables shown at the top (the report's numbers), or None.
    title: the page title.
  """
  data = page_data(notes)
  colours = "".join(".t%d{background:%s}\n" % (i, type_colour(i)) for i in range(len(data["types"])))
  # "<" escaped so that no note text can close the <script> element the JSON sits in.
  payload = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")
  gold_pane = ('<div class="pane" id="gold-pane"><h3>Gold</h3><pre id="gold-text"></pre></div>'
               if data["has_gold"] else "")
  return """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="referrer" content="no-referrer">
<title>%(title)s</title>
<style>%(style)s%(colours)s</style></head>
<body>
<div class="phi-warning" id="phi-warning">This page contains the full text of clinical notes:
protected health information (PHI). Keep it on this machine, share it only as you would the notes,
and delete it when done. It loads nothing from the network.</div>
<header><h1>%(title)s</h1>
<section id="metrics">%(tables)s</section>
%(legend)s
</header>
<div id="layout">
<nav id="notes"><div id="pager"><button id="prev">&lt;</button> <span id="page-label"></span>
<button id="next">&gt;</button>
<input id="find" placeholder="go to note id" aria-label="go to note id">
<div id="list-head">%(list_head)s</div></div>
<ol id="note-list"></ol></nav>
<main id="note-view"><h2 id="note-title"></h2><div id="note-counts"></div>
<div class="panes">%(gold_pane)s<div class="pane" id="system-pane"><h3>%(system_title)s</h3>
<pre id="system-text"></pre></div></div></main>
</div>
<script type="application/json" id="page-data">%(payload)s</script>
<script>%(script)s</script>
</body></html>
""" % {"title": _escape(title), "style": _STYLE, "colours": colours,
       "tables": _tables_html(metrics), "legend": _legend_html(data["types"], data["has_gold"]),
       "list_head": ("note, worst first: exact / FP / FN" if data["has_gold"] else
                     "note: predicted spans"),
       "gold_pane": gold_pane, "system_title": "System" if data["has_gold"] else "Predicted spans",
       "payload": payload, "script": _SCRIPT}


def write_page(path, page):
  """Writes the page atomically, readable by its owner only (mode 0600: it holds PHI)."""
  with fileio.atomic_output(path) as tmp:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      f.write(page)
    os.chmod(tmp, 0o600)  # whatever the umask or an earlier file made of it
