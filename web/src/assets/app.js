// Entry point: "/" and "/join/CODE" are the player, "/host" the host.

import { startHost } from "./host.js";
import { startPlayer } from "./player.js";

const path = location.pathname.replace(/\/+$/, "") || "/";
const role = path === "/host" || path.startsWith("/host/") ? "host" : "player";

for (const a of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll("[data-nav]"))) {
  if (a.dataset.nav === role) a.setAttribute("aria-current", "page");
}

if (role === "host") {
  startHost();
} else {
  const joinMatch = path.match(/^\/join\/([^/]+)$/);
  const code = (joinMatch ? decodeURIComponent(joinMatch[1]) : new URLSearchParams(location.search).get("code")) || "";
  startPlayer({ code: code.replace(/\s+/g, "").toUpperCase() });
}
