//! Deployment controller unit tests.
