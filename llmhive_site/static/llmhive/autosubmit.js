// A <select data-autosubmit> submits its form when changed (no inline handler: the CSP allows none).
document.addEventListener("change", (event) => {
  if (event.target.matches("select[data-autosubmit]")) {
    event.target.form.submit();
  }
});
