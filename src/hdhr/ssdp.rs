//! SSDP (UPnP discovery) messages: parsing M-SEARCH requests, writing responses and NOTIFY.
