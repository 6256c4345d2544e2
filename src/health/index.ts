export { createReadiness, type Readiness, type ReadinessOptions, type ReadinessReport, type UpstreamHealthSummary } from './readiness.js';
