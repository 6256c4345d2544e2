export { ACCESS_PREFIX, AccessLog, type AccessRecord } from './access.js';
export { evictionFromConfig } from './from-config.js';
export { createEviction, type Eviction, type EvictionOptions, type EvictionPass } from './evictor.js';
export { StoreIndex, type IndexNode, type ScanResult } from './store-index.js';
export { planEviction, type Plan, type PlanInput, type PlanNode, type Victim } from './plan.js';
export { manifestReferences } from '../manifests/parse.js';
export { byteSize } from './size.js';
export { trackPins, type Pins } from './pins.js';
export { leasedTurns, type EvictionTurn, type EvictionTurns } from './turns.js';
