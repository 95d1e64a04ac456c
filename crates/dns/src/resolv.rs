//! resolv.conf.
