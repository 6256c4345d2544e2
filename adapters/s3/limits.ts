/** S3's limits, kept apart from the SDK so that the config can check against them cheaply. */
/** S3's smallest part (every part but the last). */
export const MIN_PART_SIZE = 5 * 1024 * 1024;
