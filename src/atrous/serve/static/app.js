// atrous serve's page: plain JavaScript, no framework, nothing loaded from elsewhere.
//
// A photo is segmented once (POST v1/segment?format=png: the label map, pixel value = class
// index); the overlay is then composited here, on a canvas, from the photo, the label map and
// the model's palette, so the opacity slider redraws without a request, and the legend's
// pixel shares are counted from the same label map. Portrait mode asks v1/portrait again
// when the subject changes, and when the blur slider has rested for 300 ms (a drag or a held
// arrow key asks once, not once a step: an aborted fetch does not stop the server's work).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const els = {
    body: document.body,
    modelInfo: $("model-info"),
    apiKey: $("api-key"),
    keyBox: $("key-box"),
    drop: $("drop"),
    file: $("file"),
    error: $("error"),
    view: $("view"),
    result: $("result"),
    portrait: $("portrait"),
    busy: $("busy"),
    status: $("status"),
    modeOverlay: $("mode-overlay"),
    modePortrait: $("mode-portrait"),
    overlayControls: $("overlay-controls"),
    portraitControls: $("portrait-controls"),
    opacity: $("opacity"),
    opacityValue: $("opacity-value"),
    legend: $("legend"),
    download: $("download"),
    downloadLabels: $("download-labels"),
    subject: $("subject"),
    blur: $("blur"),
    blurValue: $("blur-value"),
    downloadPortrait: $("download-portrait"),
  };

  const KEY_STORAGE = "atrous.apiKey";
  const IGNORE_INDEX = 255;
  const BLUR_DEBOUNCE_MS = 300;

  const state = {
    model: null, // GET v1/model
    lut: null, // Uint8Array(256 * 3): class index -> colour
    file: null, // the chosen File
    fileSerial: 0, // bumped per photo, so stale answers are dropped
    stem: "photo",
    photo: null, // ImageData of the photo, as the browser shows it
    labels: null, // Uint8Array, one class index per photo pixel
    labelBlob: null, // the server's palette PNG, for download
    mode: "overlay",
    segmentAbort: null,
    portraitAbort: null,
    portraitKey: null, // the parameters of the portrait shown or being fetched
    portraitBlob: null,
    portraitUrl: null,
    blurTimer: 0,
    busy: 0,
    drawQueued: false,
  };

  // -- small helpers ------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(message, status = 0, retryAfter = null) {
      super(message);
      this.status = status;
      this.retryAfter = retryAfter;
    }
  }

  function setBusy(delta) {
    state.busy = Math.max(0, state.busy + delta);
    els.busy.hidden = state.busy === 0;
    els.view.setAttribute("aria-busy", String(state.busy > 0));
    if (state.busy > 0) els.body.dataset.state = "busy";
    else if (els.body.dataset.state === "busy") els.body.dataset.state = "ready";
  }

  function showError(message) {
    els.error.textContent = message;
    els.error.hidden = false;
    els.body.dataset.state = "error";
  }

  function clearError() {
    els.error.hidden = true;
    els.error.textContent = "";
  }

  function isAbort(error) {
    return error && error.name === "AbortError";
  }

  function apiKey() {
    try {
      return sessionStorage.getItem(KEY_STORAGE) || els.apiKey.value.trim();
    } catch {
      return els.apiKey.value.trim(); // storage disabled: the field itself
    }
  }

  // A request to the service; a non-2xx answer becomes an ApiError with the server's `detail`.
  async function api(path, options = {}) {
    const headers = new Headers(options.headers || {});
    const key = apiKey();
    if (key) headers.set("X-API-Key", key);
    let response;
    try {
      response = await fetch(path, { ...options, headers });
    } catch (error) {
      if (isAbort(error)) throw error;
      throw new ApiError("The server could not be reached (is `atrous serve` still running?).");
    }
    if (!response.ok) {
      const retry = Number(response.headers.get("Retry-After"));
      throw new ApiError(await describeError(response), response.status, retry > 0 ? retry : null);
    }
    return response;
  }

  async function describeError(response) {
    let detail = "";
    try {
      const body = await response.json();
      detail = body && body.detail;
    } catch {
      // not JSON: fall back to the status line
    }
    if (Array.isArray(detail)) {
      // FastAPI's validation errors: [{loc: [...], msg: "..."}]
      detail = detail
        .map((d) => {
          const where = Array.isArray(d.loc) ? d.loc.filter((p) => p !== "query" && p !== "body").join(".") : "";
          return (where ? where + ": " : "") + (d.msg || JSON.stringify(d));
        })
        .join("; ");
    } else if (detail && typeof detail === "object") {
      detail = JSON.stringify(detail);
    }
    detail = String(detail || response.statusText || "the request failed");
    const hints = {
      401: " Enter the server's API key under “API key” above.",
      413: " Try a smaller photo.",
      415: " Choose a JPEG, PNG or WebP photo.",
      503: " The server is overloaded or the photo took too long; try again or use a smaller photo.",
    };
    let hint = hints[response.status] || "";
    if (response.status === 429) {
      const retry = response.headers.get("Retry-After");
      hint = ` The server is busy; try again${retry ? ` in ${retry} s` : " in a moment"}.`;
    }
    return `${detail} (HTTP ${response.status}).${hint}`;
  }

  function saveBlob(blob, filename) {
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;
    link.download = filename;
    link.hidden = true;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }

  function formatShare(fraction) {
    const percent = fraction * 100;
    if (percent > 0 && percent < 0.1) return "<0.1 %";
    return `${percent.toFixed(1)} %`;
  }

  // -- the label map: the server's palette PNG, read back as class indices ------------------
  //
  // A browser decodes a palette PNG to the colours of its palette, and two classes may share
  // a colour (atrous pads the palette with black). So the PNG's palette is replaced by the
  // grey ramp (i, i, i) before decoding, and any colour-management or transparency chunk is
  // dropped: the decoded red channel is then the class index itself.

  const CRC_TABLE = (() => {
    const table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
    return table;
  })();

  function crc32(bytes) {
    let c = 0xffffffff;
    for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  }

  function pngChunk(type, data) {
    const out = new Uint8Array(12 + data.length);
    const view = new DataView(out.buffer);
    view.setUint32(0, data.length);
    for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
    out.set(data, 8);
    view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
    return out;
  }

  const PNG_SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
  const DROPPED_CHUNKS = new Set(["tRNS", "gAMA", "cHRM", "sRGB", "iCCP", "sBIT", "bKGD"]);

  function indexPng(buffer) {
    const src = new Uint8Array(buffer);
    if (src.length < 8 || PNG_SIGNATURE.some((b, i) => src[i] !== b)) {
      throw new ApiError("The server's label map is not a PNG.");
    }
    const view = new DataView(buffer);
    const parts = [src.subarray(0, 8)];
    let pos = 8;
    let bitDepth = 8;
    let colourType = -1;
    while (pos + 12 <= src.length) {
      const length = view.getUint32(pos);
      const type = String.fromCharCode(...src.subarray(pos + 4, pos + 8));
      const end = pos + 12 + length;
      if (type === "IHDR") {
        bitDepth = src[pos + 16];
        colourType = src[pos + 17];
      }
      if (type === "PLTE") {
        const entries = Math.min(256, 2 ** bitDepth);
        const ramp = new Uint8Array(entries * 3);
        for (let i = 0; i < entries; i++) ramp.fill(i, 3 * i, 3 * i + 3);
        parts.push(pngChunk("PLTE", ramp));
      } else if (!DROPPED_CHUNKS.has(type)) {
        parts.push(src.subarray(pos, end));
      }
      pos = end;
      if (type === "IEND") break;
    }
    // Palette (3) or 8-bit grey (0) label maps: either way the red channel is the index.
    if (!(colourType === 3 || (colourType === 0 && bitDepth === 8))) {
      throw new ApiError(`The server's label map is not an 8-bit palette PNG (colour type ${colourType}).`);
    }
    return new Blob(parts, { type: "image/png" });
  }

  async function decodeLabels(buffer, width, height) {
    const bitmap = await createImageBitmap(indexPng(buffer), {
      colorSpaceConversion: "none",
      premultiplyAlpha: "none",
    });
    // Drawn at the photo's size, nearest neighbour, should the server's map be another size.
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(bitmap, 0, 0, width, height);
    bitmap.close();
    const rgba = ctx.getImageData(0, 0, width, height).data;
    const labels = new Uint8Array(width * height);
    for (let i = 0, j = 0; i < labels.length; i++, j += 4) labels[i] = rgba[j];
    return labels;
  }

  // -- the model ----------------------------------------------------------------------------

  function classNames() {
    return (state.model && state.model.classes) || [];
  }

  function className(index) {
    const names = classNames();
    if (index === IGNORE_INDEX) return "ignore";
    return names[index] !== undefined ? String(names[index]) : `class ${index}`;
  }

  function buildLut(palette) {
    const lut = new Uint8Array(256 * 3);
    (palette || []).slice(0, 256).forEach((colour, i) => {
      lut[3 * i] = colour[0];
      lut[3 * i + 1] = colour[1];
      lut[3 * i + 2] = colour[2];
    });
    lut.fill(0, 3 * IGNORE_INDEX, 3 * IGNORE_INDEX + 3); // the ignore label is black, as in atrous.inference.overlay
    return lut;
  }

  async function loadModel() {
    try {
      const response = await api("v1/model");
      const model = await response.json();
      state.model = model;
      state.lut = buildLut(model.palette);
      const parts = [model.name, `${classNames().length} classes`];
      if (model.precision) parts.push(model.precision);
      if (model.output_stride) parts.push(`output stride ${model.output_stride}`);
      els.modelInfo.textContent = parts.filter(Boolean).join(" · ");
      fillSubjects(model);
      if (els.body.dataset.state === "starting" || els.body.dataset.state === "error") {
        els.body.dataset.state = "ready";
        clearError();
      }
      if (state.labels) {
        renderLegend();
        scheduleDraw();
      }
    } catch (error) {
      if (error.status === 503 && error.retryAfter) {
        // Still loading (GET /readyz says the same): ask again when the server suggests.
        els.modelInfo.textContent = "The model is loading…";
        setTimeout(loadModel, error.retryAfter * 1000);
        return;
      }
      els.modelInfo.textContent = "Model unavailable";
      showError(`Could not read the model: ${error.message}`);
      if (/HTTP 401/.test(error.message)) els.keyBox.open = true;
    }
  }

  function fillSubjects(model) {
    const names = classNames();
    let preferred = model.subject_default;
    if (typeof preferred === "number") preferred = names[preferred];
    const previous = els.subject.value;
    els.subject.replaceChildren(
      ...names.map((name, index) => {
        const option = document.createElement("option");
        option.value = String(name);
        option.textContent = index === 0 && names.length > 1 ? `${name} (class 0)` : String(name);
        return option;
      }),
    );
    const wanted = [previous, preferred].find((v) => v && names.includes(v));
    if (wanted) els.subject.value = wanted;
    else if (names.length > 1) els.subject.value = String(names[1]);
  }

  // -- a new photo --------------------------------------------------------------------------

  async function takeFile(file) {
    if (!file) return;
    if (file.type && !file.type.startsWith("image/")) {
      showError(`“${file.name}” is not an image (${file.type}); choose a photo.`);
      return;
    }
    clearError();
    const serial = ++state.fileSerial;
    state.file = file;
    state.stem = (file.name || "photo").replace(/\.[^.]*$/, "") || "photo";
    state.photo = null;
    state.labels = null;
    state.labelBlob = null;
    state.portraitKey = null;
    clearPortrait();
    els.download.disabled = true;
    els.downloadLabels.disabled = true;
    els.legend.replaceChildren(emptyItem("Segmenting…"));
    els.result.dataset.state = "pending";
    els.body.classList.add("has-photo");
    els.view.hidden = false;
    els.status.textContent = `${file.name || "photo"} — segmenting…`;

    // The browser decodes the photo while the server segments it.
    const shown = showPhoto(file, serial);
    const segmented = segment(file, serial, shown);
    if (state.mode === "portrait") requestPortrait();
    const [photoOk] = await Promise.all([shown, segmented]);
    if (serial !== state.fileSerial) return;
    if (!photoOk && els.error.hidden) {
      showError(`Neither this browser nor the server can read “${file.name}” as an image.`);
    }
  }

  async function showPhoto(file, serial) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(file); // EXIF orientation applied, as the server does
    } catch {
      bitmap = await photoFromServer(file);
      if (!bitmap) return false;
    }
    if (serial !== state.fileSerial) {
      bitmap.close();
      return true;
    }
    const { width, height } = bitmap;
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    bitmap.close();
    state.photo = ctx.getImageData(0, 0, width, height);
    els.result.width = width;
    els.result.height = height;
    draw();
    return true;
  }

  // A format this browser cannot decode (TIFF, say) but the server can: the server's
  // overlay at opacity 0 is the photo itself, upright, as a PNG.
  async function photoFromServer(file) {
    try {
      const body = new FormData();
      body.append("image", file, file.name || "photo");
      const response = await api("v1/segment?format=overlay&alpha=0", { method: "POST", body });
      return await createImageBitmap(await response.blob());
    } catch {
      return null; // the segmentation request reports the server's reason
    }
  }

  async function segment(file, serial, shown) {
    if (state.segmentAbort) state.segmentAbort.abort();
    const abort = new AbortController();
    state.segmentAbort = abort;
    setBusy(+1);
    const started = performance.now();
    try {
      const body = new FormData();
      body.append("image", file, file.name || "photo");
      const response = await api("v1/segment?format=png", { method: "POST", body, signal: abort.signal });
      const buffer = await response.arrayBuffer();
      const elapsed = performance.now() - started;
      if (serial !== state.fileSerial) return;
      state.labelBlob = new Blob([buffer], { type: "image/png" });
      els.downloadLabels.disabled = false;
      // The photo must be on screen to know the size to draw the labels at.
      await shown;
      if (serial !== state.fileSerial || !state.photo) return;
      const { width, height } = state.photo;
      state.labels = await decodeLabels(buffer, width, height);
      if (serial !== state.fileSerial) return;
      els.result.dataset.state = "overlay";
      els.download.disabled = false;
      renderLegend();
      draw();
      els.status.textContent = `${file.name || "photo"} — ${width}×${height} px, segmented in ${Math.round(elapsed)} ms`;
    } catch (error) {
      if (isAbort(error)) return;
      if (serial !== state.fileSerial) return;
      els.result.dataset.state = "failed";
      els.legend.replaceChildren(emptyItem("No result."));
      els.status.textContent = `${file.name || "photo"} — not segmented`;
      showError(error.message);
    } finally {
      setBusy(-1);
      if (state.segmentAbort === abort) state.segmentAbort = null;
    }
  }

  // -- the overlay --------------------------------------------------------------------------

  function scheduleDraw() {
    if (state.drawQueued) return;
    state.drawQueued = true;
    requestAnimationFrame(() => {
      state.drawQueued = false;
      draw();
    });
  }

  // out = (1 − α)·photo + α·colour, every pixel, as atrous.inference.overlay (format=overlay).
  function draw() {
    const photo = state.photo;
    if (!photo) return;
    const ctx = els.result.getContext("2d");
    const alpha = Number(els.opacity.value) / 100;
    if (!state.labels || !state.lut || alpha === 0) {
      ctx.putImageData(photo, 0, 0);
    } else {
      const out = new ImageData(photo.width, photo.height);
      const src = photo.data;
      const dst = out.data;
      const lut = state.lut;
      const labels = state.labels;
      const keep = 1 - alpha;
      // Uint8ClampedArray rounds half to even, as NumPy's round() in the server's overlay.
      for (let i = 0, j = 0; i < labels.length; i++, j += 4) {
        const c = 3 * labels[i];
        dst[j] = keep * src[j] + alpha * lut[c];
        dst[j + 1] = keep * src[j + 1] + alpha * lut[c + 1];
        dst[j + 2] = keep * src[j + 2] + alpha * lut[c + 2];
        dst[j + 3] = 255;
      }
      ctx.putImageData(out, 0, 0);
    }
    els.result.dataset.opacity = String(alpha);
    els.result.dataset.serial = String(Number(els.result.dataset.serial || 0) + 1);
  }

  function emptyItem(text) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = text;
    return li;
  }

  function renderLegend() {
    const labels = state.labels;
    if (!labels) return;
    const counts = new Uint32Array(256);
    for (let i = 0; i < labels.length; i++) counts[labels[i]]++;
    const present = [];
    counts.forEach((count, index) => {
      if (count > 0) present.push({ index, share: count / labels.length });
    });
    present.sort((a, b) => b.share - a.share || a.index - b.index);
    const lut = state.lut || buildLut([]);
    els.legend.replaceChildren(
      ...present.map(({ index, share }) => {
        const li = document.createElement("li");
        li.dataset.index = String(index);
        li.dataset.name = className(index);
        li.dataset.share = share.toFixed(6);
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = `rgb(${lut[3 * index]}, ${lut[3 * index + 1]}, ${lut[3 * index + 2]})`;
        const name = document.createElement("span");
        name.className = "name";
        name.textContent = className(index);
        const pct = document.createElement("span");
        pct.className = "share";
        pct.textContent = formatShare(share);
        li.append(swatch, name, pct);
        return li;
      }),
    );
  }

  // -- portrait mode ------------------------------------------------------------------------

  function portraitParams() {
    const params = new URLSearchParams();
    if (els.subject.value) params.set("subject", els.subject.value);
    params.set("blur", els.blur.value);
    return params;
  }

  function clearPortrait() {
    if (state.portraitAbort) state.portraitAbort.abort();
    if (state.portraitUrl) URL.revokeObjectURL(state.portraitUrl);
    state.portraitUrl = null;
    state.portraitBlob = null;
    els.portrait.removeAttribute("src");
    els.portrait.dataset.state = "empty";
    els.downloadPortrait.disabled = true;
  }

  async function requestPortrait() {
    clearTimeout(state.blurTimer);
    state.blurTimer = 0;
    const file = state.file;
    if (!file) return;
    const params = portraitParams();
    const key = `${state.fileSerial}?${params}`;
    if (key === state.portraitKey) return; // shown, or on its way
    state.portraitKey = key;
    if (state.portraitAbort) state.portraitAbort.abort();
    const abort = new AbortController();
    state.portraitAbort = abort;
    els.portrait.dataset.state = "pending";
    els.portrait.dataset.requests = String(Number(els.portrait.dataset.requests || 0) + 1);
    setBusy(+1);
    const started = performance.now();
    try {
      const body = new FormData();
      body.append("image", file, file.name || "photo");
      const response = await api(`v1/portrait?${params}`, { method: "POST", body, signal: abort.signal });
      const blob = await response.blob();
      if (abort.signal.aborted) return;
      const url = URL.createObjectURL(blob);
      els.portrait.src = url;
      await els.portrait.decode().catch(() => {});
      if (abort.signal.aborted) {
        URL.revokeObjectURL(url);
        return;
      }
      if (state.portraitUrl) URL.revokeObjectURL(state.portraitUrl);
      state.portraitUrl = url;
      state.portraitBlob = blob;
      els.portrait.dataset.state = "ready";
      els.portrait.dataset.blur = params.get("blur"); // what this image was made with
      els.portrait.dataset.serial = String(Number(els.portrait.dataset.serial || 0) + 1);
      els.downloadPortrait.disabled = false;
      clearError();
      if (state.mode === "portrait") {
        els.status.textContent = `${file.name || "photo"} — portrait of “${params.get("subject") || "the subject"}”, blur ${params.get("blur")} px, in ${Math.round(performance.now() - started)} ms`;
      }
    } catch (error) {
      if (isAbort(error)) return;
      state.portraitKey = null; // let the same parameters be tried again
      els.portrait.dataset.state = "failed";
      showError(error.message);
    } finally {
      setBusy(-1);
      if (state.portraitAbort === abort) state.portraitAbort = null;
    }
  }

  function setMode(mode) {
    state.mode = mode;
    const portrait = mode === "portrait";
    els.modeOverlay.setAttribute("aria-pressed", String(!portrait));
    els.modePortrait.setAttribute("aria-pressed", String(portrait));
    els.overlayControls.hidden = portrait;
    els.portraitControls.hidden = !portrait;
    els.result.hidden = portrait;
    els.portrait.hidden = !portrait;
    els.body.dataset.mode = mode;
    if (portrait) requestPortrait();
  }

  // -- wiring -------------------------------------------------------------------------------

  els.file.addEventListener("change", () => {
    takeFile(els.file.files[0]);
    els.file.value = ""; // choosing the same file again still counts
  });

  // Drops anywhere on the page count; the zone lights up while something is dragged over.
  let dragDepth = 0;
  const hasFiles = (event) => Array.from(event.dataTransfer?.types || []).includes("Files");
  document.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    dragDepth++;
    els.drop.classList.add("over");
  });
  document.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) els.drop.classList.remove("over");
  });
  document.addEventListener("dragover", (event) => {
    if (hasFiles(event)) {
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
    }
  });
  document.addEventListener("drop", (event) => {
    event.preventDefault(); // never navigate to the dropped file
    dragDepth = 0;
    els.drop.classList.remove("over");
    const file = Array.from(event.dataTransfer?.files || [])[0];
    if (file) takeFile(file);
  });
  document.addEventListener("paste", (event) => {
    const file = Array.from(event.clipboardData?.files || []).find((f) => f.type.startsWith("image/"));
    if (file) takeFile(file);
  });

  els.opacity.addEventListener("input", () => {
    els.opacityValue.textContent = `${els.opacity.value} %`;
    scheduleDraw();
  });

  els.modeOverlay.addEventListener("click", () => setMode("overlay"));
  els.modePortrait.addEventListener("click", () => setMode("portrait"));

  els.blur.addEventListener("input", () => {
    els.blurValue.textContent = `${els.blur.value} px`;
    clearTimeout(state.blurTimer);
    state.blurTimer = setTimeout(requestPortrait, BLUR_DEBOUNCE_MS);
  });
  els.subject.addEventListener("change", requestPortrait);

  els.download.addEventListener("click", () => {
    els.result.toBlob((blob) => blob && saveBlob(blob, `${state.stem}-overlay.png`), "image/png");
  });
  els.downloadLabels.addEventListener("click", () => {
    if (state.labelBlob) saveBlob(state.labelBlob, `${state.stem}-labels.png`);
  });
  els.downloadPortrait.addEventListener("click", () => {
    if (state.portraitBlob) saveBlob(state.portraitBlob, `${state.stem}-portrait.jpg`);
  });

  $("key-form").addEventListener("submit", (event) => event.preventDefault()); // Enter: "change" does the work
  els.apiKey.value = apiKey();
  els.apiKey.addEventListener("change", () => {
    const key = els.apiKey.value.trim();
    try {
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch {
      // storage disabled: the key lasts until the page is left
    }
    clearError();
    loadModel();
  });

  els.opacityValue.textContent = `${els.opacity.value} %`;
  els.blurValue.textContent = `${els.blur.value} px`;
  loadModel();
})();
