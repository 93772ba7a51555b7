// The admin's lists search by a room's share link too (chat/admin.py, JoinKeySearch). A
// sealed room's whole link holds its secret after "#": it is cut off before the search
// is sent, so that it reaches no query string, access log or link of the server's.
document.addEventListener(
  "submit",
  (event) => {
    const box = event.target.querySelector?.("#searchbar");
    if (box) box.value = box.value.split("#")[0];
  },
  true,
);
