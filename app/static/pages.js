// Jumpboard pages: draw the plotly charts, refresh live pages, remember the API token.
"use strict";

function drawCharts() {
  if (typeof Plotly === "undefined") return;
  document.querySelectorAll("[data-chart]").forEach((el) => {
    const specEl = document.getElementById(el.id + "-spec");
    if (!specEl) return;
    const spec = JSON.parse(specEl.textContent);
    Plotly.newPlot(el, spec.data, spec.layout, spec.config).then(() => {
      el.dataset.ready = "true";
    });
  });
}

function userIsBusy() {
  const active = document.activeElement;
  return active && ["INPUT", "TEXTAREA", "SELECT"].includes(active.tagName);
}

function scheduleRefresh() {
  const seconds = Number(document.body.dataset.refresh || 0);
  if (!seconds) return;
  const tick = () => {
    if (userIsBusy()) {
      setTimeout(tick, seconds * 1000);
    } else {
      window.location.reload();
    }
  };
  setTimeout(tick, seconds * 1000);
}

function rememberToken() {
  // The token stays in this tab only (sessionStorage), never in a URL or a cookie.
  const key = "jumpboard-token";
  document.querySelectorAll("input[data-token]").forEach((input) => {
    if (!input.value) input.value = sessionStorage.getItem(key) || "";
    input.form.addEventListener("submit", () => sessionStorage.setItem(key, input.value));
  });
}

function autosubmitFilters() {
  document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => select.form.submit());
  });
}

window.addEventListener("DOMContentLoaded", () => {
  drawCharts();
  scheduleRefresh();
  rememberToken();
  autosubmitFilters();
});
