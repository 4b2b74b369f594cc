/* keel.js — progressive enhancement only (UI-2); every page works without it.
   Theme persistence, drawer and menus, "/" for search, select-all, confirm, FK autocomplete. */
(function () {
  "use strict";
  var doc = document, root = doc.documentElement, THEME_KEY = "keel-theme";
  root.classList.add("k-js");

  function closestEl(node, selector) {
    return node && node.nodeType === 1 ? node.closest(selector) : null;
  }

  /* Theme: the radios work alone through CSS :has(); this remembers the choice (localStorage, and a
     cookie so the server can render data-theme and avoid a flash). */
  function applyTheme(value) {
    if (value === "light" || value === "dark") root.setAttribute("data-theme", value);
    else root.removeAttribute("data-theme");
  }
  function initTheme() {
    var saved = null;
    try { saved = localStorage.getItem(THEME_KEY); } catch (e) { /* storage disabled */ }
    if (saved) applyTheme(saved);
    var current = root.getAttribute("data-theme") || "system";
    doc.querySelectorAll('input[name="keel-theme"]').forEach(function (radio) {
      radio.checked = radio.value === current;
      radio.addEventListener("change", function () {
        if (!radio.checked) return;
        applyTheme(radio.value);
        try { localStorage.setItem(THEME_KEY, radio.value); } catch (e) { /* ignore */ }
        doc.cookie = "keel_theme=" + radio.value + "; Path=/; Max-Age=31536000; SameSite=Lax" +
          (location.protocol === "https:" ? "; Secure" : "");
      });
    });
  }

  /* Menus (<details class="k-menu">) and the drawer close on Escape and outside clicks. */
  function closeMenus(except) {
    doc.querySelectorAll("details.k-menu[open]").forEach(function (d) { if (d !== except) d.open = false; });
  }
  doc.addEventListener("click", function (e) { closeMenus(closestEl(e.target, "details.k-menu")); });
  doc.addEventListener("keydown", function (e) {
    if (e.key === "Escape") {
      var open = doc.querySelector("details.k-menu[open]");
      if (open) { open.open = false; open.querySelector("summary").focus(); }
      var drawer = doc.getElementById("k-drawer");
      if (drawer && drawer.checked) { drawer.checked = false; drawer.focus(); }
      return;
    }
    /* "/" focuses the global search unless the user is typing somewhere. */
    if (e.key === "/" && !e.ctrlKey && !e.metaKey && !e.altKey) {
      var t = e.target, tag = t && t.tagName;
      if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (t && t.isContentEditable)) return;
      var q = doc.getElementById("k-search-q");
      if (q && q.offsetParent !== null) { e.preventDefault(); q.focus(); q.select(); }
    }
  });

  /* Select-all: <input type=checkbox data-select-all> in a table header drives the row checkboxes
     (.k-row-select) of that table, or those named by the attribute's value inside its form. */
  function rowBoxes(master) {
    var name = master.getAttribute("data-select-all");
    var scope = closestEl(master, name ? "form" : "table") || doc;
    var sel = name ? 'input[type="checkbox"][name="' + name + '"]' : "input.k-row-select";
    return Array.prototype.filter.call(scope.querySelectorAll(sel), function (b) { return b !== master; });
  }
  function syncMaster(master) {
    var boxes = rowBoxes(master), n = boxes.filter(function (b) { return b.checked; }).length;
    master.checked = boxes.length > 0 && n === boxes.length;
    master.indeterminate = n > 0 && n < boxes.length;
    var scope = closestEl(master, "form") || doc;
    scope.querySelectorAll("[data-selected-count]").forEach(function (el) { el.textContent = String(n); });
    /* Bulk buttons wait for a selection (or "all matching"); without JS the server says so. */
    var all = scope.querySelector('input[name="all_matching"]');
    scope.querySelectorAll("[data-needs-selection]").forEach(function (b) {
      b.disabled = n === 0 && !(all && all.checked);
    });
  }
  doc.querySelectorAll("input[data-select-all]").forEach(function (master) {
    var last = null;
    master.addEventListener("change", function () {
      rowBoxes(master).forEach(function (b) { if (!b.disabled) b.checked = master.checked; });
      syncMaster(master);
    });
    rowBoxes(master).forEach(function (box, i, all) {
      box.addEventListener("click", function (e) {  /* shift-click selects a range */
        if (e.shiftKey && last !== null) {
          var a = Math.min(last, i), b = Math.max(last, i);
          for (var j = a; j <= b; j++) all[j].checked = box.checked;
        }
        last = i;
        syncMaster(master);
      });
    });
    var scope = closestEl(master, "form");
    var all = scope && scope.querySelector('input[name="all_matching"]');
    if (all) all.addEventListener("change", function () { syncMaster(master); });
    syncMaster(master);
  });

  /* Tables: one that fits its panel scrolls with the page, its header row sticky under the top
     bar; a wider one keeps its own sideways scroll. Measured again when the window resizes. */
  function fitTables() {
    doc.querySelectorAll(".k-table-wrap").forEach(function (wrap) {
      var table = wrap.querySelector("table");
      if (!table) return;
      wrap.classList.remove("k-table-wrap--page");
      if (table.scrollWidth <= wrap.clientWidth + 1) wrap.classList.add("k-table-wrap--page");
    });
  }
  var fitTimer = null;
  window.addEventListener("resize", function () { clearTimeout(fitTimer); fitTimer = setTimeout(fitTables, 100); });
  fitTables();

  /* A table's sort links are one Tab stop (the sorted column's, else the first): Left and Right
     move between them, so Tab goes from the header to the first record quickly. */
  doc.querySelectorAll(".k-table thead").forEach(function (head) {
    var links = Array.prototype.slice.call(head.querySelectorAll("a.k-sort"));
    if (links.length < 2) return;
    var current = head.querySelector("th[aria-sort] a.k-sort") || links[0];
    links.forEach(function (a, i) {
      if (a !== current) a.tabIndex = -1;
      a.addEventListener("keydown", function (e) {
        var step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
        var next = links[i + step];
        if (!step || !next) return;
        e.preventDefault(); a.tabIndex = -1; next.tabIndex = 0; next.focus();
      });
    });
  });

  /* A list row opens its record when clicked anywhere outside its controls and links
     (Ctrl/⌘/Shift-click: a new tab); the row's display field stays the real link for keyboards. */
  doc.addEventListener("click", function (e) {
    if (e.defaultPrevented || e.button !== 0) return;
    var row = closestEl(e.target, ".k-table tbody tr");
    var link = row && row.querySelector("a.k-row-link");
    if (!link || closestEl(e.target, "a, button, input, select, textarea, label, summary, .k-col-select")) return;
    var selected = window.getSelection ? String(window.getSelection()) : "";
    if (selected) return;  /* the user is selecting text to copy */
    if (e.ctrlKey || e.metaKey || e.shiftKey) window.open(link.href, "_blank", "noopener");
    else window.location.assign(link.href);
  });

  /* Confirm before submit: <button data-confirm="Delete 3 rows?"> (or on a link or form). */
  doc.addEventListener("click", function (e) {
    var el = closestEl(e.target, "[data-confirm]");
    if (el && el.tagName !== "FORM" && !window.confirm(el.getAttribute("data-confirm"))) {
      e.preventDefault(); e.stopImmediatePropagation();
    }
  }, true);
  doc.addEventListener("submit", function (e) {
    var form = e.target;
    if (form.hasAttribute("data-confirm") && !window.confirm(form.getAttribute("data-confirm"))) e.preventDefault();
  });

  /* FK autocomplete (EDIT-9): <input name=… data-autocomplete="/admin/x/lookup"> becomes a combobox;
     the key moves to a hidden input of the same name. Endpoint answers {results:[{id,label}]}. */
  var acCount = 0;
  function initAutocomplete(input) {
    var url = input.getAttribute("data-autocomplete"), id = input.id || "k-ac-" + (++acCount);
    var hidden = doc.createElement("input"), list = doc.createElement("ul"), live = doc.createElement("span");
    var chosenLabel = input.getAttribute("data-autocomplete-label") || input.value;
    var timer = null, controller = null, active = -1, options = [];
    hidden.type = "hidden"; hidden.name = input.name; hidden.value = input.value;
    input.removeAttribute("name"); input.value = chosenLabel; input.id = id;
    input.placeholder = "Type to search…";
    list.id = id + "-listbox"; list.className = "k-ac-list"; list.setAttribute("role", "listbox"); list.hidden = true;
    live.className = "k-sr-only"; live.setAttribute("role", "status");
    input.setAttribute("role", "combobox"); input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-expanded", "false"); input.setAttribute("aria-controls", list.id);
    input.after(hidden, list, live);

    function close() {
      list.hidden = true; active = -1; input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
    }
    function highlight(i) {
      options.forEach(function (li, j) { li.setAttribute("aria-selected", j === i ? "true" : "false"); });
      active = i;
      if (i >= 0) { input.setAttribute("aria-activedescendant", options[i].id); options[i].scrollIntoView({ block: "nearest" }); }
    }
    function choose(li) {
      hidden.value = li.getAttribute("data-id"); chosenLabel = li.textContent; input.value = chosenLabel; close();
      hidden.dispatchEvent(new Event("change", { bubbles: true }));
    }
    function render(results, message) {
      list.textContent = ""; options = [];
      results.forEach(function (r, i) {
        var li = doc.createElement("li");
        li.id = id + "-opt-" + i; li.className = "k-ac-option"; li.setAttribute("role", "option");
        li.setAttribute("data-id", String(r.id)); li.textContent = r.label;
        li.addEventListener("mousedown", function (e) { e.preventDefault(); choose(li); });
        list.appendChild(li); options.push(li);
      });
      if (!results.length) {
        var none = doc.createElement("li"); none.className = "k-ac-empty"; none.textContent = message || "No matches";
        list.appendChild(none);
      }
      live.textContent = message || (results.length + (results.length === 1 ? " result" : " results"));
      list.hidden = false; input.setAttribute("aria-expanded", "true"); highlight(-1);
    }
    function search() {
      if (controller) controller.abort();
      controller = typeof AbortController === "function" ? new AbortController() : null;
      var sep = url.indexOf("?") < 0 ? "?" : "&";
      fetch(url + sep + "q=" + encodeURIComponent(input.value.trim()), {
        headers: { Accept: "application/json" }, credentials: "same-origin", signal: controller && controller.signal
      }).then(function (r) { return r.ok ? r.json() : { results: [] }; })
        .then(function (data) { if (doc.activeElement === input) render((data && data.results) || []); })
        .catch(function (err) {  /* aborted: ignore; offline or refused: say so, keep the current value */
          if (err && err.name !== "AbortError" && doc.activeElement === input) render([], "Search is unavailable");
        });
    }
    input.addEventListener("input", function () {
      clearTimeout(timer); timer = setTimeout(search, 200);
    });
    input.addEventListener("focus", function () { if (!input.value) search(); });
    input.addEventListener("keydown", function (e) {
      var open = !list.hidden;
      if (e.key === "ArrowDown") { e.preventDefault(); if (!open) search(); else highlight(Math.min(active + 1, options.length - 1)); }
      else if (e.key === "ArrowUp" && open) { e.preventDefault(); highlight(Math.max(active - 1, 0)); }
      else if (e.key === "Enter" && open && active >= 0) { e.preventDefault(); choose(options[active]); }
      else if (e.key === "Escape" && open) { e.preventDefault(); e.stopPropagation(); close(); }
    });
    input.addEventListener("blur", function () {
      close();
      if (!input.value.trim()) { hidden.value = ""; chosenLabel = ""; }
      else if (input.value !== chosenLabel) input.value = chosenLabel;  /* typed but not chosen: revert */
    });
  }
  doc.querySelectorAll("input[data-autocomplete]").forEach(initAutocomplete);

  /* GET filter forms leave their empty fields out of the URL. */
  doc.querySelectorAll("form[data-clean-get]").forEach(function (form) {
    form.addEventListener("submit", function () {
      form.querySelectorAll("input[name], select[name]").forEach(function (el) {
        if (el.value === "" || (el.type === "radio" && !el.checked)) el.disabled = true;
      });
    });
  });
  window.addEventListener("pageshow", function () {  /* back to a page kept in memory */
    doc.querySelectorAll("form[data-clean-get] [disabled]").forEach(function (el) { el.disabled = false; });
  });

  /* The palette (Ctrl-K / ⌘K): type-ahead over pages, lists and records this user may open,
     from /admin/palette; Enter opens the highlighted one (an exact key is listed first). */
  var opener = doc.querySelector("[data-palette]");
  var palette = null;
  function buildPalette(url) {
    var dlg = doc.createElement("dialog"), box = doc.createElement("div");
    var input = doc.createElement("input"), list = doc.createElement("ul"), foot = doc.createElement("p");
    var live = doc.createElement("span"), timer = null, controller = null, active = 0, items = [];
    dlg.className = "k-palette"; dlg.setAttribute("aria-label", "Go to a page, list or record");
    box.className = "k-palette-box";
    input.className = "k-input k-palette-input"; input.type = "text"; input.id = "k-palette-q";
    input.placeholder = "Go to a page, list or record…"; input.autocomplete = "off";
    input.setAttribute("role", "combobox"); input.setAttribute("aria-expanded", "true");
    input.setAttribute("aria-controls", "k-palette-list"); input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-label", "Go to");
    list.id = "k-palette-list"; list.className = "k-palette-list"; list.setAttribute("role", "listbox");
    list.setAttribute("aria-label", "Results");
    foot.className = "k-palette-foot"; foot.textContent = "↑ ↓ to move · Enter to open · Esc to close";
    live.className = "k-sr-only"; live.setAttribute("role", "status");
    box.append(input, list, foot, live); dlg.appendChild(box); doc.body.appendChild(dlg);
    dlg.addEventListener("click", function (e) { if (e.target === dlg) dlg.close(); });
    function mark(i) {
      active = Math.max(0, Math.min(i, items.length - 1));
      items.forEach(function (li, j) { li.setAttribute("aria-selected", j === active ? "true" : "false"); });
      if (items[active]) { input.setAttribute("aria-activedescendant", items[active].id); items[active].scrollIntoView({ block: "nearest" }); }
      else input.removeAttribute("aria-activedescendant");
    }
    function go(li) { if (li) window.location.assign(li.getAttribute("data-url")); }
    function render(results) {
      list.textContent = ""; items = [];
      results.forEach(function (r, i) {
        var li = doc.createElement("li"), kind = doc.createElement("span"), label = doc.createElement("span"), hint = doc.createElement("span");
        li.id = "k-palette-opt-" + i; li.className = "k-palette-item"; li.setAttribute("role", "option");
        li.setAttribute("data-url", r.url);
        kind.className = "k-palette-kind"; kind.textContent = r.exact ? "Exact" : r.kind;
        label.className = "k-palette-label"; label.textContent = r.label;
        hint.className = "k-palette-hint"; hint.textContent = r.hint || "";
        li.append(kind, label, hint);
        li.addEventListener("mousedown", function (e) { e.preventDefault(); go(li); });
        list.appendChild(li); items.push(li);
      });
      if (!results.length) {
        var none = doc.createElement("li"); none.className = "k-palette-empty"; none.textContent = "Nothing matches";
        list.appendChild(none);
      }
      live.textContent = results.length + (results.length === 1 ? " result" : " results");
      mark(0);
    }
    function search() {
      if (controller) controller.abort();
      controller = typeof AbortController === "function" ? new AbortController() : null;
      fetch(url + "?q=" + encodeURIComponent(input.value.trim()), {
        headers: { Accept: "application/json" }, credentials: "same-origin", signal: controller && controller.signal
      }).then(function (r) { return r.ok ? r.json() : { results: [] }; })
        .then(function (data) { render((data && data.results) || []); })
        .catch(function (err) { if (err && err.name !== "AbortError") render([]); });
    }
    input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(search, 120); });
    input.addEventListener("keydown", function (e) {
      if (e.key === "ArrowDown") { e.preventDefault(); mark(active + 1); }
      else if (e.key === "ArrowUp") { e.preventDefault(); mark(active - 1); }
      else if (e.key === "Enter") { e.preventDefault(); go(items[active]); }
    });
    return { open: function () { if (!dlg.open) { dlg.showModal(); input.select(); search(); } } };
  }
  if (opener) {
    opener.hidden = false;
    var openPalette = function () {
      if (!palette) palette = buildPalette(opener.getAttribute("data-palette"));
      palette.open();
    };
    opener.addEventListener("click", openPalette);
    doc.addEventListener("keydown", function (e) {
      if ((e.ctrlKey || e.metaKey) && !e.altKey && (e.key === "k" || e.key === "K")) { e.preventDefault(); openPalette(); }
    });
  }

  /* After a failed save, focus goes to the error summary; its links focus their field. */
  var summary = doc.querySelector("[data-error-summary]");
  if (summary) {
    summary.focus();
    summary.addEventListener("click", function (e) {
      var a = closestEl(e.target, 'a[href^="#"]');
      var field = a && doc.getElementById(a.getAttribute("href").slice(1));
      if (field) { e.preventDefault(); field.focus(); }
    });
  }
  /* Many-to-many sets: a type-ahead filter over the checkbox list; with data-lookup, matches
     beyond the listed ones are fetched and added (unchecked) to the list. */
  function initM2m(box) {
    var filter = box.querySelector(".k-m2m-filter"), list = box.querySelector(".k-m2m-options");
    var url = box.getAttribute("data-lookup"), name = box.getAttribute("data-name"), timer = null;
    if (!filter || !list) return;
    filter.hidden = false;
    function apply() {
      var q = filter.value.trim().toLowerCase();
      list.querySelectorAll("li").forEach(function (li) {
        var box_ = li.querySelector("input");
        li.hidden = !!q && li.textContent.toLowerCase().indexOf(q) < 0 && !(box_ && box_.checked);
      });
    }
    function fetchMore() {
      var q = filter.value.trim();
      if (!url || !q) return;
      fetch(url + "?q=" + encodeURIComponent(q), { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : { results: [] }; })
        .then(function (data) {
          ((data && data.results) || []).forEach(function (r) {
            var id = String(r.id);
            if (list.querySelector('input[value="' + id.replace(/["\\]/g, "") + '"]')) return;
            var li = doc.createElement("li"), label = doc.createElement("label"), input = doc.createElement("input"), span = doc.createElement("span");
            label.className = "k-check"; input.type = "checkbox"; input.className = "k-checkbox"; input.name = name; input.value = id;
            span.textContent = r.label; label.append(input, " ", span); li.appendChild(label); list.appendChild(li);
          });
          apply();
        }).catch(function () { /* offline: the listed ones stay */ });
    }
    filter.addEventListener("input", function () { apply(); clearTimeout(timer); timer = setTimeout(fetchMore, 250); });
    filter.addEventListener("keydown", function (e) { if (e.key === "Enter") e.preventDefault(); });
  }
  doc.querySelectorAll("[data-m2m]").forEach(initM2m);

  /* Editable inlines: "Add a row" copies the last blank row with the next free index. */
  function initInline(section) {
    var add = section.querySelector("[data-inline-add]"), prefix = section.getAttribute("data-inline");
    var body = section.querySelector("tbody");
    if (!add || !body) return;
    add.hidden = false;
    add.addEventListener("click", function () {
      var blanks = body.querySelectorAll("tr[data-inline-new]");
      if (!blanks.length) return;
      var next = 0;
      body.querySelectorAll("[name^='" + prefix + "new']").forEach(function (el) {
        var n = parseInt(el.name.slice(prefix.length + 3), 10);
        if (n >= next) next = n + 1;
      });
      var row = blanks[blanks.length - 1].cloneNode(true);
      row.querySelectorAll("[name]").forEach(function (el) {
        el.name = el.name.replace(/^(.*\.new)\d+\./, "$1" + next + ".");
        if (el.type === "checkbox") el.checked = false; else if (el.tagName !== "SELECT") el.value = "";
        el.removeAttribute("aria-invalid");
      });
      row.querySelectorAll(".k-error").forEach(function (p) { p.remove(); });
      body.appendChild(row);
      var first = row.querySelector("input, select"); if (first) first.focus();
    });
  }
  doc.querySelectorAll("[data-inline]").forEach(initInline);

  initTheme();
})();
