use owca::collector::{Collector, CollectorConfig};
#[test]
fn loads() {
    let c = Collector::start(&CollectorConfig { events: vec!["page_faults".into(), "instructions".into()], ..Default::default() });
    match c { Ok(c) => { println!("events {:?}", c.events()); } Err(e) => panic!("{e}\n{e:?}") }
}
