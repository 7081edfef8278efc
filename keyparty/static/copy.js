// The copy button of the signing token page: shown only where the clipboard works.
(function () {
  document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
    if (!navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(button.dataset.copy).then(function () {
        button.dataset.done = "1";
      });
    });
  });
})();
