// In-page scanner: reads OPENPGP4FPR: codes and this server's URL codes,
// and opens the verification page. Needs a secure context for the camera.
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

  function target(text) {
    text = text.trim();
    var match = /^OPENPGP4FPR:([0-9A-Fa-f]{40})(#.*)?$/.exec(text);
    if (match) return "/e/" + encodeURIComponent(eventId) + "/k/" + match[1].toUpperCase();
    var url;
    try { url = new URL(text); } catch (e) { return null; }
    var path = /^\/e\/[^/]+\/k\/[0-9A-Fa-f]{40}$/;
    var sameServer = url.origin === new URL(base).origin || url.origin === window.location.origin;
    return sameServer && path.test(url.pathname) ? url.pathname : null;
  }

  function tick() {
    if (done) return;
    if (video.readyState === video.HAVE_ENOUGH_DATA) {
      canvas.width = video.videoWidth;
      canvas.height = video.videoHeight;
      var context = canvas.getContext("2d", { willReadFrequently: true });
      context.drawImage(video, 0, 0, canvas.width, canvas.height);
      var image = context.getImageData(0, 0, canvas.width, canvas.height);
      var code = jsQR(image.data, image.width, image.height, { inversionAttempts: "dontInvert" });
      if (code && code.data) {
        var path = target(code.data);
        if (path) {
          done = true;
          status.textContent = "✔";
          window.location.assign(path);
          return;
        }
        status.textContent = box.dataset.unknown;
      }
    }
    window.requestAnimationFrame(tick);
  }

  if (!window.isSecureContext || !navigator.mediaDevices) {
    status.textContent = box.dataset.nocamera;
    return;
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
