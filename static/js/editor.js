// A light code editor: the textarea stays the real, accessible field; a highlighted copy of
// its text (Prism) sits underneath and follows its scrolling. Without JavaScript, or for a
// language Prism does not know, it is a plain monospace textarea.
(function () {
  "use strict";
  var box = document.querySelector(".code-editor");
  if (!box || !window.Prism) return;
  var area = box.querySelector("textarea");
  var lang = box.dataset.language;
  var grammar = window.Prism.languages[lang];
  if (!area || !grammar) return;
  var pre = document.createElement("pre");
  var code = document.createElement("code");
  pre.setAttribute("aria-hidden", "true");
  pre.className = "code-layer";
  pre.appendChild(code);
  box.insertBefore(pre, area);
  box.classList.add("is-highlighted");
  function paint() {
    // A trailing newline needs a character after it or the last line collapses.
    code.innerHTML = window.Prism.highlight(area.value + "\n ", grammar, lang);
    sync();
  }
  function sync() { pre.scrollTop = area.scrollTop; pre.scrollLeft = area.scrollLeft; }
  area.addEventListener("input", paint);
  area.addEventListener("scroll", sync);
  area.addEventListener("keydown", function (e) {
    if (e.key !== "Tab" || e.shiftKey || e.ctrlKey || e.altKey || e.metaKey) return;
    // Tab indents inside the editor; Escape then Tab leaves it (keyboard users are not trapped).
    if (box.dataset.escaped === "1") { box.dataset.escaped = ""; return; }
    e.preventDefault();
    var s = area.selectionStart, t = area.selectionEnd;
    area.setRangeText("    ", s, t, "end");
    paint();
  });
  area.addEventListener("keyup", function (e) { if (e.key === "Escape") box.dataset.escaped = "1"; });
  paint();
})();
