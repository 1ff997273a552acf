// seedbucket console: uploads with progress, copy buttons, live numbers, confirmations.
// Served from the binary; the page works without it except for uploads and live numbers.
"use strict";

(function () {
  const csrf = document.body.dataset.csrf || "";

  // Forms that ask before they act (deletes).
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (e) => {
      if (!window.confirm(form.dataset.confirm)) e.preventDefault();
    });
  });

  // Copy buttons: data-copy names the input whose value is copied.
  document.querySelectorAll("button[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const input = document.getElementById(button.dataset.copy);
      if (!input) return;
      try {
        await navigator.clipboard.writeText(input.value);
      } catch (_) {
        input.select();
        document.execCommand("copy");
      }
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
  });

  // Live numbers of an object page.
  const live = document.getElementById("live-stats");
  if (live && live.dataset.src) {
    const refresh = async () => {
      try {
        const r = await fetch(live.dataset.src, { credentials: "same-origin" });
        if (!r.ok) return;
        const v = await r.json();
        live.querySelectorAll("[data-field]").forEach((el) => {
          const f = el.dataset.field;
          if (f in v) el.textContent = String(v[f]);
        });
      } catch (_) { /* the next tick tries again */ }
    };
    setInterval(refresh, 2000);
  }

  // Uploads: one PUT up to a part's size, else a multipart upload part by part.
  const form = document.getElementById("upload-form");
  if (!form) return;
  const box = document.getElementById("upload-box");
  const bar = document.getElementById("upload-progress");
  const status = document.getElementById("upload-status");

  function send(method, path, body, onProgress) {
    return new Promise((resolve, reject) => {
      const x = new XMLHttpRequest();
      x.open(method, path);
      x.setRequestHeader("X-CSRF-Token", csrf);
      if (onProgress) x.upload.onprogress = (e) => onProgress(e.loaded);
      x.onload = () => {
        let v = {};
        try { v = JSON.parse(x.responseText); } catch (_) { v = { error: x.responseText }; }
        if (x.status >= 200 && x.status < 300 && !v.error) resolve(v);
        else reject(new Error(v.error || ("HTTP " + x.status)));
      };
      x.onerror = () => reject(new Error("the connection failed"));
      x.send(body);
    });
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const file = document.getElementById("upload-file").files[0];
    if (!file) return;
    const typed = document.getElementById("upload-key").value.trim();
    const key = typed || (form.dataset.prefix || "") + file.name;
    const partSize = Number(form.dataset.partSize);
    const q = "bucket=" + encodeURIComponent(form.dataset.bucket) + "&key=" +
      encodeURIComponent(key) + "&type=" + encodeURIComponent(file.type || "");
    box.hidden = false;
    bar.value = 0;
    const show = (done) => {
      const pct = file.size ? Math.floor((100 * done) / file.size) : 100;
      bar.value = pct;
      status.textContent = pct + "% of " + file.name;
    };
    try {
      if (file.size <= partSize) {
        await send("PUT", "/api/upload/object?" + q, file, show);
      } else {
        const created = await send("POST", "/api/upload/create?" + q, "");
        const id = "&upload_id=" + encodeURIComponent(created.upload_id);
        const etags = [];
        try {
          for (let n = 1, at = 0; at < file.size; n++, at += partSize) {
            const part = file.slice(at, Math.min(at + partSize, file.size));
            const r = await send("PUT", "/api/upload/part?" + q + id + "&part=" + n, part,
              (loaded) => show(at + loaded));
            etags.push(r.etag);
          }
          await send("POST", "/api/upload/complete?" + q + id, etags.join("\n"));
        } catch (err) {
          await send("POST", "/api/upload/abort?" + q + id, "").catch(() => {});
          throw err;
        }
      }
      show(file.size);
      status.textContent = "Uploaded " + key;
      status.dataset.done = "1";
      setTimeout(() => window.location.reload(), 400);
    } catch (err) {
      status.textContent = "Upload failed: " + err.message;
      status.dataset.failed = "1";
    }
  });
})();
