// In-page scanner: reads OPENPGP4FPR: codes and this server's URL codes,
// and opens the verification page. Needs a secure context for the camera.
//
// A badge has two codes side by side, and a phone pointed at it sees both.
// jsQR reads one code per image and can miss both when two are in view, so
// each frame is read whole and then in regions (halves, then quarters; one
// more region per frame, in turn). Where the browser has BarcodeDetector
// (it finds every code in a frame) that is asked first.
(function () {
  "use strict";
  var box = document.getElementById("scanner");
  if (!box) return;
  var video = document.getElementById("camera");
  var canvas = document.getElementById("frame");
  var status = document.getElementById("scan-status");
  var base = box.dataset.base;
  var eventId = box.dataset.event;
  var done = false;
  var detector = null;
  var detecting = false;

  // Regions of the frame as [left, top, width, height] fractions: the halves
  // hold one code each when a badge fills the view, the quarters when it is
  // seen from further away.
  var REGIONS = [
    [0, 0, 0.5, 1], [0.5, 0, 0.5, 1], [0.25, 0, 0.5, 1],
    [0, 0, 1, 0.5], [0, 0.5, 1, 0.5], [0, 0.25, 1, 0.5],
    [0, 0, 0.5, 0.5], [0.5, 0, 0.5, 0.5], [0, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5],
    [0.25, 0.25, 0.5, 0.5]
  ];
  var nextRegion = 0;

  // What a code says, as {path} to open or {problem} to show.
  // OPENPGP4FPR: in any case (other apps write it in lower case), then a
  // fingerprint of 40 hex digits, spaces and a final newline allowed
  // (some generators add them); anything after '#' is ignored. A 16-digit
  // key ID is refused: it does not identify a key safely.
  function target(text) {
    text = String(text).trim();
    var scheme = /^openpgp4fpr:/i;
    if (scheme.test(text)) {
      var rest = text.replace(scheme, "").split("#")[0].replace(/\s+/g, "");
      if (/^[0-9A-Fa-f]{40}$/.test(rest)) {
        return { path: "/e/" + encodeURIComponent(eventId) + "/k/" + rest.toUpperCase() };
      }
      if (/^[0-9A-Fa-f]{16}$/.test(rest)) return { problem: box.dataset.keyid };
      return { problem: box.dataset.unknown };
    }
    var url;
    try { url = new URL(text); } catch (e) { return { problem: box.dataset.unknown }; }
    var path = /^\/e\/[^/]+\/k\/[0-9A-Fa-f]{40}$/;
    var sameServer = url.origin === new URL(base).origin || url.origin === window.location.origin;
    return sameServer && path.test(url.pathname) ? { path: url.pathname } : { problem: box.dataset.unknown };
  }

  // The first code that leads somewhere wins; else the first problem is shown.
  function choose(texts) {
    var problem = null;
    for (var i = 0; i < texts.length; i++) {
      var found = target(texts[i]);
      if (found.path) return found;
      problem = problem || found;
    }
    return problem;
  }

  function go(found) {
    if (!found) return false;
    if (found.path) {
      done = true;
      status.textContent = "✔";
      window.location.assign(found.path);
      return true;
    }
    status.textContent = found.problem;
    return false;
  }

  function read(context, x, y, width, height) {
    if (width < 40 || height < 40) return null;
    var image = context.getImageData(x, y, width, height);
    var code = jsQR(image.data, image.width, image.height, { inversionAttempts: "dontInvert" });
    return code && code.data ? code.data : null;
  }

  function readFrame() {
    var width = video.videoWidth, height = video.videoHeight;
    canvas.width = width;
    canvas.height = height;
    var context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(video, 0, 0, width, height);
    var texts = [];
    var whole = read(context, 0, 0, width, height);
    if (whole) texts.push(whole);
    // Two regions per frame, in turn, keep a phone's frame rate.
    for (var n = 0; n < 2; n++) {
      var r = REGIONS[nextRegion];
      nextRegion = (nextRegion + 1) % REGIONS.length;
      var part = read(context, Math.round(r[0] * width), Math.round(r[1] * height),
                      Math.round(r[2] * width), Math.round(r[3] * height));
      if (part) texts.push(part);
    }
    return texts;
  }

  function tick() {
    if (done) return;
    if (video.readyState === video.HAVE_ENOUGH_DATA && !detecting) {
      if (detector) {
        detecting = true;
        detector.detect(video).then(function (codes) {
          detecting = false;
          var texts = codes.map(function (c) { return c.rawValue; });
          if (!go(choose(texts))) go(choose(readFrame()));
        }, function () {
          detecting = false;
          detector = null;  // fall back to jsQR for good
        });
      } else {
        go(choose(readFrame()));
      }
    }
    if (!done) window.requestAnimationFrame(tick);
  }

  if (!window.isSecureContext || !navigator.mediaDevices) {
    status.textContent = box.dataset.nocamera;
    return;
  }
  if ("BarcodeDetector" in window) {
    try { detector = new window.BarcodeDetector({ formats: ["qr_code"] }); } catch (e) { detector = null; }
  }
  navigator.mediaDevices
    .getUserMedia({ video: { facingMode: "environment" }, audio: false })
    .then(function (stream) {
      video.srcObject = stream;
      return video.play();
    })
    .then(function () { window.requestAnimationFrame(tick); })
    .catch(function () { status.textContent = box.dataset.nocamera; });
})();
