//! SiliconDust UDP discovery packets (port 65001): decoding requests, encoding replies.
