/* Django admin: its SelectFilter2 widget names its search icons with aria-label on a plain <span>,
   which ARIA does not allow (the name is ignored). As an image with a name, it is allowed and read. */
(function () {
  "use strict";
  function fix() {
    document.querySelectorAll("span.help-tooltip[aria-label]:not([role])").forEach(function (icon) {
      icon.setAttribute("role", "img");
    });
  }
  new MutationObserver(fix).observe(document.documentElement, {childList: true, subtree: true});
})();
