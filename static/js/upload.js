// Upload with a progress bar: the same form posted with XMLHttpRequest so the browser reports
// how much has been sent. Without JavaScript the form posts normally.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.XMLHttpRequest || !window.FormData) return;
  var box = form.querySelector(".upload-progress");
  var bar = box.querySelector(".bar");
  var fill = bar.querySelector("span");
  var status = box.querySelector(".upload-status");
  form.addEventListener("submit", function (event) {
    var input = form.querySelector("input[type=file]");
    if (!input.files.length) return;
    var max = parseInt(form.dataset.max, 10) * 1024 * 1024;
    if (input.files[0].size > max) {
      event.preventDefault();
      status.textContent = "That file is larger than " + form.dataset.max + " MB; use SFTP for it.";
      box.hidden = false;
      return;
    }
    event.preventDefault();
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
    box.hidden = false;
    status.textContent = "Uploading " + input.files[0].name + "…";
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) return;
      var pct = Math.round((100 * e.loaded) / e.total);
      fill.style.width = pct + "%";
      bar.setAttribute("aria-valuenow", String(pct));
      status.textContent = pct < 100 ? "Uploading… " + pct + "%" : "Saving on the server…";
    });
    xhr.addEventListener("load", function () {
      if (xhr.status >= 200 && xhr.status < 300) {
        status.textContent = xhr.responseText || "Uploaded.";
        window.location.reload();
      } else {
        status.textContent = xhr.responseText || "The upload failed.";
        fill.style.width = "0%";
      }
    });
    xhr.addEventListener("error", function () { status.textContent = "The upload was interrupted."; });
    xhr.send(new FormData(form));
  });
})();
