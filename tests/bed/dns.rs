//! A scripted DNS server for the probe tests (UDP, hickory-proto for the messages). What it does
//! depends on the name asked:
//! `ok.test` -> A 192.0.2.1 after `delay`; `nx.test` -> NXDOMAIN; `fail.test` -> SERVFAIL;
//! `drop.test` -> no answer; `garbage.test` -> bytes that are not DNS.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record, rdata::A};

pub struct DnsServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl DnsServer {
    pub fn start(delay: Duration) -> DnsServer {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !st.load(Ordering::SeqCst) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
                let Ok(q) = Message::from_vec(&buf[..n]) else { continue };
                let Some(query) = q.queries.first().cloned() else { continue };
                let name = query.name().to_ascii().trim_end_matches('.').to_string();
                let mut r = Message::response(q.metadata.id, q.metadata.op_code);
                r.metadata.recursion_desired = q.metadata.recursion_desired;
                r.add_query(query.clone());
                match name.as_str() {
                    "ok.test" => {
                        std::thread::sleep(delay);
                        r.add_answer(Record::from_rdata(query.name().clone(), 60, RData::A(A::new(192, 0, 2, 1))));
                    }
                    "nx.test" => r.metadata.response_code = ResponseCode::NXDomain,
                    "fail.test" => r.metadata.response_code = ResponseCode::ServFail,
                    "drop.test" => continue,
                    "garbage.test" => {
                        let _ = sock.send_to(b"\x12", from);
                        continue;
                    }
                    _ => r.metadata.response_code = ResponseCode::Refused,
                }
                let _ = sock.send_to(&r.to_vec().unwrap(), from);
            }
        });
        DnsServer { addr, stop }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
