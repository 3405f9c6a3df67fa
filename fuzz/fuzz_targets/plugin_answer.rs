//! The plug-in answer parser: any line a plug-in writes, read as the agent reads it
//! (`serde_json` into `protocol::Answer`), then taken as the detector and allocator
//! runners take it: anomalies and metrics converted and encoded as the anomaly package
//! (checked by the strict Prometheus reader), allocations read per task with their CPU
//! list and schemata lines parsed. No panic; every metric is either in the text or counted
//! as dropped.
#![no_main]

use std::{collections::BTreeMap, sync::Arc};

use libfuzzer_sys::fuzz_target;
use owca::{
    allocators::TaskAllocations,
    anomaly::{ContentionAnomaly, anomaly_metrics},
    cgroups::cpu_list::parse_cpu_list,
    metrics::{Labels, Metric},
    plugins::protocol::Answer,
    resctrl::schemata::{self, Resource},
    storage::prometheus::encode,
};

fuzz_target!(|data: &[u8]| {
    // As `Plugin` reads an answer: parsed with its caps, then checked as a whole.
    let Ok(answer) = serde_json::from_slice::<Answer>(data) else {
        return;
    };
    if answer.check().is_err() {
        return;
    }
    for (task_id, value) in answer.allocations.unwrap_or_default() {
        let Ok(allocations) = TaskAllocations::from_json(&task_id, &value) else {
            continue;
        };
        if let Some(cpu_set) = &allocations.cpu_set {
            let _ = parse_cpu_list(cpu_set);
        }
        if let Some(rdt) = &allocations.rdt {
            if let Some(l3) = &rdt.l3 {
                let _ = schemata::parse(Resource::L3, l3);
            }
            if let Some(mb) = &rdt.mb {
                let _ = schemata::parse(Resource::Mb, mb);
            }
        }
    }

    let anomalies: Vec<ContentionAnomaly> = answer.anomalies.into_iter().map(Into::into).collect();
    let task_labels: Labels = BTreeMap::from(
        [("workload_instance", "w/1"), ("app", "a\"b\\c\nd")].map(|(k, v)| (k.into(), v.into())),
    );
    let common: Arc<Labels> = Arc::new(BTreeMap::from([("host".into(), "node-1".into())]));
    let (mut metrics, errors) = anomaly_metrics(&anomalies, |_| Some(&task_labels), &common);
    assert!(errors.is_empty());
    metrics.extend(
        answer
            .metrics
            .into_iter()
            .map(|m| Metric::from(m).with_shared(&common)),
    );
    let encoded = encode(&metrics);
    let samples = owca_fuzz::prom_text::check(&encoded.text)
        .unwrap_or_else(|e| panic!("{e}\n--- text:\n{}", encoded.text));
    assert_eq!(samples.len() + encoded.dropped(), metrics.len());
});
