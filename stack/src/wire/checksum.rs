//! The internet checksum (RFC 1071) and the pseudo-headers of RFC 9293 3.1 / RFC 8200 8.1.
