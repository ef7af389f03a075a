"""The web: the admin console (``/admin``) and, next, the member portal (``/portal``),
server-rendered pages served by ``treu serve`` next to the API (``install``)."""
