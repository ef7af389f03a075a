"""Images Treu stores and serves itself (a reward's picture): validated and re-encoded
on the way in, served from Treu's own origin so the pages' ``img-src 'self'`` shows
them (``treu.media.service``)."""
