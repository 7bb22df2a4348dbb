// Copy buttons: <button data-copy="field-id" hidden> copies that field's value.
// Without JavaScript the buttons stay hidden and the readonly fields still allow
// selecting and copying by hand.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const status = document.querySelector("[data-copy-status]");
  const say = (text) => { if (status) { status.textContent = text; } };
  for (const button of document.querySelectorAll("button[data-copy]")) {
    const field = document.getElementById(button.dataset.copy);
    if (!field) { continue; }
    button.hidden = false;
    button.addEventListener("click", async () => {
      field.focus();
      field.select();
      if (!navigator.clipboard) {
        say("Selected: press Ctrl+C (or Cmd+C) to copy.");
        return;
      }
      try {
        await navigator.clipboard.writeText(field.value);
        say("Copied to the clipboard.");
      } catch {
        say("Could not copy: the text is selected, press Ctrl+C (or Cmd+C).");
      }
    });
  }
});
