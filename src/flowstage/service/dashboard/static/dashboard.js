// flowstage dashboard: live updates over server-sent events.
// An element with data-live-src is re-fetched (as an HTML fragment) when the server
// reports a change; data-live-run limits that to changes of one run.
(function () {
  "use strict";

  var MIN_GAP_MS = 400;

  function Region(element) {
    this.element = element;
    this.busy = false;
    this.dirty = false;
    this.last = 0;
  }

  Region.prototype.wants = function (change) {
    var run = this.element.getAttribute("data-live-run");
    if (!run) {
      return true;
    }
    if (change.run) {
      return change.run === run;
    }
    return !change.runs || change.runs.indexOf(run) !== -1;
  };

  Region.prototype.refresh = function () {
    var self = this;
    if (self.busy) {
      self.dirty = true;
      return;
    }
    var wait = self.last + MIN_GAP_MS - Date.now();
    if (wait > 0) {
      self.busy = true;
      window.setTimeout(function () {
        self.busy = false;
        self.refresh();
      }, wait);
      return;
    }
    self.busy = true;
    self.dirty = false;
    self.last = Date.now();
    fetch(self.element.getAttribute("data-live-src"), {
      headers: { "X-Fragment": "1", Accept: "text/html" },
      credentials: "same-origin",
      cache: "no-store"
    })
      .then(function (response) {
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null) {
          self.element.innerHTML = html;
          document.body.dispatchEvent(new CustomEvent("flowstage:refreshed"));
        }
      })
      .catch(function () {})
      .then(function () {
        self.busy = false;
        if (self.dirty) {
          self.refresh();
        }
      });
  };

  function connect(regions) {
    var body = document.body;
    var source = new EventSource(body.getAttribute("data-events"));
    source.addEventListener("open", function () {
      body.setAttribute("data-live", "on");
    });
    source.addEventListener("hello", function () {
      body.setAttribute("data-live", "on");
    });
    source.addEventListener("error", function () {
      body.setAttribute("data-live", "off");
    });
    source.addEventListener("change", function (message) {
      var change;
      try {
        change = JSON.parse(message.data);
      } catch (ignored) {
        return;
      }
      regions.forEach(function (region) {
        if (region.wants(change)) {
          region.refresh();
        }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var regions = Array.prototype.map.call(
      document.querySelectorAll("[data-live-src]"),
      function (element) {
        return new Region(element);
      }
    );
    if (window.EventSource && document.body.getAttribute("data-events")) {
      connect(regions);
    }
  });
})();
