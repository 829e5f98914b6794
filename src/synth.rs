//! Synthetic traffic builder: writes pcaps of TCP handshakes and teardowns, DNS exchanges and
//! ICMP with chosen timing, so tests need no outside file. (Placeholder until it lands.)
