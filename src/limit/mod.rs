//! Protection against overload: the circuit breaker (and, later, the token-bucket limiter).
