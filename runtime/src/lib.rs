//! compart runtime (see README.md).
