//! A simulated Enigma2 receiver (OpenWebIF JSON, picons, MPEG-TS) for the demo and tests.
