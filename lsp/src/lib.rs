//! compart language server (see README.md).
