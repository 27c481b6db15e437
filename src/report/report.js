// The row browser: rows come from the JSON block above as data; every string from the dataset
// goes into the page through textContent, never as markup.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var PAGE = 50;
  var state = { q: "", group: "", flag: "", seed: "", cluster: "", page: 0 };
  var haystacks = null;
  var shown = [];

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function haystack(i) {
    if (!haystacks) haystacks = new Array(data.rows.length);
    if (haystacks[i] === undefined) {
      var r = data.rows[i];
      haystacks[i] = r.m.map(function (t) { return t[1]; }).join("\n").toLowerCase() + "\n" + (r.meta || "").toLowerCase();
    }
    return haystacks[i];
  }

  function matches(r, i) {
    if (state.group !== "" && r.g !== +state.group) return false;
    if (state.flag !== "" && r.f.indexOf(state.flag) < 0) return false;
    if (state.seed !== "" && r.seed !== +state.seed) return false;
    if (state.cluster !== "" && r.c !== +state.cluster) return false;
    return state.q === "" || haystack(i).indexOf(state.q) >= 0;
  }

  // Text with ``` fences: prose as paragraphs, fenced parts as code blocks.
  function content(parent, text) {
    var parts = text.split("```");
    parts.forEach(function (part, k) {
      if (k % 2 === 1 && k < parts.length - 1) {
        var nl = part.indexOf("\n");
        var code = nl >= 0 && /^[\w+#.-]*$/.test(part.slice(0, nl)) ? part.slice(nl + 1) : part;
        var pre = el("pre");
        pre.appendChild(el("code", null, code));
        parent.appendChild(pre);
      } else if (part.trim() !== "") {
        parent.appendChild(el("p", null, k % 2 === 1 ? "```" + part : part));
      }
    });
  }

  function turns(parent, messages) {
    messages.forEach(function (t) {
      var d = el("div", "turn " + (["user", "assistant", "system"].indexOf(t[0]) >= 0 ? t[0] : "other"));
      d.appendChild(el("div", "role", t[0]));
      content(d, t[1]);
      parent.appendChild(d);
    });
  }

  function rowView(r) {
    var box = el("article", "row");
    var head = el("div", "row-head");
    head.appendChild(el("strong", null, data.groups[r.g] + " #" + r.i));
    if (r.seed !== null) {
      var b = el("button", "linklike", "seed row " + r.seed);
      b.title = "show only rows made from this seed row";
      b.addEventListener("click", function () { setFilter("seed", String(r.seed)); });
      head.appendChild(b);
    }
    if (r.c !== null) {
      var c = el("button", "linklike", "near-duplicate cluster " + (r.c + 1));
      c.addEventListener("click", function () { setFilter("cluster", String(r.c)); });
      head.appendChild(c);
    }
    r.f.forEach(function (f) { head.appendChild(el("span", "chip", f)); });
    box.appendChild(head);
    turns(box, r.m);
    if (r.seed !== null && data.seeds[r.seed]) {
      var s = el("details", "seed");
      s.appendChild(el("summary", null, "seed row " + r.seed));
      turns(s, data.seeds[r.seed]);
      box.appendChild(s);
    }
    if (r.meta) {
      var m = el("details", "meta");
      m.appendChild(el("summary", null, "metadata"));
      m.appendChild(el("pre", null, r.meta));
      box.appendChild(m);
    }
    return box;
  }

  function render() {
    shown = [];
    data.rows.forEach(function (r, i) { if (matches(r, i)) shown.push(i); });
    var pages = Math.max(1, Math.ceil(shown.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    var list = document.getElementById("rows");
    list.textContent = "";
    shown.slice(state.page * PAGE, (state.page + 1) * PAGE).forEach(function (i) {
      list.appendChild(rowView(data.rows[i]));
    });
    document.getElementById("count").textContent =
      shown.length + " of " + data.rows.length + " rows, page " + (state.page + 1) + " of " + pages;
  }

  function setFilter(key, value) {
    state[key] = value;
    state.page = 0;
    var input = document.getElementById("filter-" + key);
    if (input) input.value = value;
    render();
  }

  function options(select, values) {
    values.forEach(function (v) {
      var o = el("option", null, v[1]);
      o.value = v[0];
      select.appendChild(o);
    });
  }

  options(document.getElementById("filter-group"), data.groups.map(function (g, i) { return [String(i), g]; }));
  options(document.getElementById("filter-flag"), data.flags.map(function (f) { return [f, f]; }));
  options(document.getElementById("filter-cluster"), data.clusters.map(function (n, i) {
    return [String(i), "cluster " + (i + 1) + " (" + n + " rows)"];
  }));
  var timer = null;
  document.getElementById("search").addEventListener("input", function (e) {
    clearTimeout(timer);
    var q = e.target.value.toLowerCase();
    timer = setTimeout(function () { setFilter("q", q); }, 120);
  });
  ["group", "flag", "cluster"].forEach(function (key) {
    document.getElementById("filter-" + key).addEventListener("change", function (e) { setFilter(key, e.target.value); });
  });
  document.getElementById("filter-seed").addEventListener("input", function (e) { setFilter("seed", e.target.value.trim()); });
  document.getElementById("prev").addEventListener("click", function () { if (state.page > 0) { state.page--; render(); } });
  document.getElementById("next").addEventListener("click", function () { state.page++; render(); });
  document.getElementById("clear").addEventListener("click", function () {
    ["q", "group", "flag", "seed", "cluster"].forEach(function (k) { state[k] = ""; });
    ["search", "filter-group", "filter-flag", "filter-seed", "filter-cluster"].forEach(function (id) {
      document.getElementById(id).value = "";
    });
    state.page = 0;
    render();
  });
  Array.prototype.forEach.call(document.querySelectorAll("[data-seed]"), function (b) {
    b.addEventListener("click", function () { setFilter("seed", b.getAttribute("data-seed")); });
  });
  Array.prototype.forEach.call(document.querySelectorAll("[data-cluster]"), function (b) {
    b.addEventListener("click", function () { setFilter("cluster", b.getAttribute("data-cluster")); });
  });
  render();
  // Milliseconds from navigation start to the first page of rows (benches/report.sh reads it).
  console.log("synth-report-ready-ms " + Math.round(performance.now()));
})();
