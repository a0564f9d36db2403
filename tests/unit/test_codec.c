/*
 * test_codec.c - varint, names, properties, handshake and datagram framing, against
 * the vectors of PROTOCOL.md section 6.
 */
#include "protocol.h"
#include "task.h"

/* ---- varint ---- */

static const struct {
  uint64_t value;
  const char* hex;
} varint_vectors[] = {
    {0, "00"},
    {127, "7f"},
    {128, "8001"},
    {300, "ac02"},
    {1048576, "808040"},
    {1048577, "818040"},
    {10485760, "80808005"},
    {10485761, "81808005"},
    {UINT64_MAX, "ffffffffffffffffff01"},
};

TEST_IMPL(varint_encode_vectors) {
  size_t i, len, n;
  uint8_t out[SB_VARINT_MAX_LEN];
  for (i = 0; i < sizeof(varint_vectors) / sizeof(varint_vectors[0]); i++) {
    unsigned char* want = sb_test_unhex(varint_vectors[i].hex, &len);
    n = sb__varint_encode(varint_vectors[i].value, out);
    ASSERT_MEM_EQ(out, n, want, len);
    free(want);
  }
}

/* Feeds hex one byte at a time; returns the final feed result and the bytes used. */
static int feed_varint(const char* hex, sb__varint_t* v, size_t* used) {
  size_t len, i;
  unsigned char* b = sb_test_unhex(hex, &len);
  int r = 0;
  sb__varint_reset(v);
  for (i = 0; i < len; i++) {
    r = sb__varint_feed(v, b[i]);
    if (r != 0) {
      i++;
      break;
    }
  }
  *used = i;
  free(b);
  return r;
}

TEST_IMPL(varint_decode_vectors) {
  size_t i, used, len;
  sb__varint_t v;
  for (i = 0; i < sizeof(varint_vectors) / sizeof(varint_vectors[0]); i++) {
    unsigned char* b = sb_test_unhex(varint_vectors[i].hex, &len);
    free(b);
    ASSERT_EQ(feed_varint(varint_vectors[i].hex, &v, &used), 1);
    ASSERT_EQ(used, len);
    ASSERT_UEQ(v.value, varint_vectors[i].value);
  }
}

TEST_IMPL(varint_edge_cases) {
  sb__varint_t v;
  size_t used;
  /* Over-long encodings are accepted, as Go's ReadUvarint accepts them. */
  ASSERT_EQ(feed_varint("8000", &v, &used), 1);
  ASSERT_UEQ(v.value, 0);
  ASSERT_EQ(used, 2);
  ASSERT_EQ(feed_varint("ff80808080808080807f", &v, &used), SB_EVARINT);
  ASSERT_EQ(feed_varint("80808080808080808000", &v, &used), 1);
  ASSERT_UEQ(v.value, 0);
  /* A 10th byte above 1 overflows; so does an 11th byte. */
  ASSERT_EQ(feed_varint("ffffffffffffffffff02", &v, &used), SB_EVARINT);
  ASSERT_EQ(used, 10);
  ASSERT_EQ(feed_varint("ffffffffffffffffff79", &v, &used), SB_EVARINT);
  ASSERT_EQ(feed_varint("ffffffffffffffffff81", &v, &used), SB_EVARINT);
  /* Truncated: every byte has the continuation bit; more is needed. */
  ASSERT_EQ(feed_varint("8080", &v, &used), 0);
  ASSERT_EQ(used, 2);
}

/* ---- names and tags ---- */

static const struct {
  const char* name;
  int ok;
} name_table[] = {
    {"test", 1},
    {"a", 1},
    {"0", 1},
    {"foo/bar", 1},
    {"foo/bar/baz", 1},
    {"a:b_c-d.e/F9", 1},
    {"steps/0/stdout", 1},
    {"u/build.proto", 1},
    {"", 0},
    {"/foo", 0},
    {"foo/", 0},
    {"foo//bar", 0},
    {"_foo", 0},
    {"foo/_bar", 0},
    {"foo/.bar", 0},
    {"-foo", 0},
    {":foo", 0},
    {"test;stream;name", 0},
    {"foo bar", 0},
    {"foo+bar", 0},
    {"prefix/+/name", 0},
    {"caf\xc3\xa9", 0},
    {"foo\tbar", 0},
    {"bad+@!tag", 0},
};

TEST_IMPL(name_validation_table) {
  size_t i;
  for (i = 0; i < sizeof(name_table) / sizeof(name_table[0]); i++) {
    int r = sb_validate_name(name_table[i].name, strlen(name_table[i].name));
    if ((r == 0) != name_table[i].ok)
      sb_test_fail(__FILE__, __LINE__, "name \"%s\": got %s", name_table[i].name,
                   sb_err_name(r));
    if (!name_table[i].ok)
      ASSERT_ERR(r, SB_ENAME);
  }
}

TEST_IMPL(name_length_limits) {
  char* big = malloc(SB_MAX_NAME_LEN + 2);
  ASSERT_NOT_NULL(big);
  memset(big, 'a', SB_MAX_NAME_LEN + 1);
  ASSERT_OK(sb_validate_name(big, SB_MAX_NAME_LEN));
  ASSERT_ERR(sb_validate_name(big, SB_MAX_NAME_LEN + 1), SB_ENAME);
  /* An embedded NUL is an illegal character, not an end. */
  ASSERT_ERR(sb_validate_name("ab\0cd", 5), SB_ENAME);
  ASSERT_ERR(sb_validate_name(NULL, 0), SB_ENAME);
  free(big);
}

TEST_IMPL(tag_validation) {
  char key[SB_MAX_TAG_KEY_LEN + 2];
  memset(key, 'k', sizeof(key));
  ASSERT_OK(sb_validate_tag("foo", 3, 0));
  ASSERT_OK(sb_validate_tag("foo/bar", 7, SB_MAX_TAG_VALUE_LEN));
  ASSERT_ERR(sb_validate_tag("foo", 3, SB_MAX_TAG_VALUE_LEN + 1), SB_ETAG);
  ASSERT_OK(sb_validate_tag(key, SB_MAX_TAG_KEY_LEN, 1));
  ASSERT_ERR(sb_validate_tag(key, SB_MAX_TAG_KEY_LEN + 1, 1), SB_ETAG);
  ASSERT_ERR(sb_validate_tag("bad+@!tag", 9, 1), SB_ETAG);
  ASSERT_ERR(sb_validate_tag("", 0, 1), SB_ETAG);
}

TEST_IMPL(address_parse) {
  int kind;
  const char* path;
  ASSERT_OK(sb__address_parse("unix:/tmp/x.sock", &kind, &path));
  ASSERT_EQ(kind, SB__ADDR_UNIX);
  ASSERT_STR_EQ(path, "/tmp/x.sock");
  ASSERT_OK(sb__address_parse("net.pipe:logdog_butler.42.1", &kind, &path));
  ASSERT_EQ(kind, SB__ADDR_PIPE);
  ASSERT_STR_EQ(path, "logdog_butler.42.1");
  ASSERT_OK(sb__address_parse("net.pipe:luciexe/host.1:2", &kind, &path));
  ASSERT_STR_EQ(path, "luciexe/host.1:2");
  ASSERT_ERR(sb__address_parse("unix:relative", &kind, &path), SB_EADDRESS);
  ASSERT_ERR(sb__address_parse("unix:", &kind, &path), SB_EADDRESS);
  ASSERT_ERR(sb__address_parse("net.pipe:", &kind, &path), SB_EADDRESS);
  ASSERT_ERR(sb__address_parse("tcp4:127.0.0.1:80", &kind, &path), SB_EADDRESS);
  ASSERT_ERR(sb__address_parse("null", &kind, &path), SB_EADDRESS);
  ASSERT_ERR(sb__address_parse(NULL, &kind, &path), SB_EADDRESS);
  {
    char longpath[200] = "unix:/";
    memset(longpath + 6, 'a', 104);
    longpath[110] = '\0';
    ASSERT_ERR(sb__address_parse(longpath, &kind, &path), SB_EADDRESS);
    longpath[109] = '\0'; /* a 104-byte path is still allowed */
    ASSERT_OK(sb__address_parse(longpath, &kind, &path));
  }
}

TEST_IMPL(name_join) {
  static const char* cases[][3] = {
      {NULL, "stdout", "stdout"},   {"", "stdout", "stdout"},
      {"u/", "stdout", "u/stdout"}, {"/a/b/", "/c/", "a/b/c"},
      {"ns", "", "ns"},             {"//", "x", "x"},
  };
  size_t i;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char* j = sb__name_join(cases[i][0], cases[i][1]);
    ASSERT_STR_EQ(j, cases[i][2]);
    free(j);
  }
}

/* ---- handshake encoding: the Go client's bytes ---- */

#define TS_RECENT_SEC INT64_C(1454472306) /* 2016-02-03T04:05:06Z */

static const char vec_61[] =
    "42544c52311e667b226e616d65223a2274657374222c22636f6e74656e7454797065223a2274657874"
    "2f706c61696e3b20636861727365743d7574662d38222c2274696d657374616d70223a22323031362d"
    "30322d30335430343a30353a30362e3030303030303030375a227d";
static const char vec_62[] =
    "42544c52311e7c7b226e616d65223a2274657374222c22636f6e74656e7454797065223a226170706c"
    "69636174696f6e2f782d6c6f67646f672d646174616772616d222c2274797065223a22646174616772"
    "616d222c2274696d657374616d70223a22323031362d30322d30335430343a30353a30362e30303030"
    "30303030375a227d";
static const char vec_63[] =
    "42544c52311e757b226e616d65223a2274657374222c22636f6e74656e7454797065223a226170706c"
    "69636174696f6e2f6f637465742d73747265616d222c2274797065223a2262696e617279222c227469"
    "6d657374616d70223a22323031362d30322d30335430343a30353a30362e3030303030303030375a22"
    "7d";
static const char vec_64[] =
    "42544c52311e7d7b226e616d65223a2274657374222c22636f6e74656e7454797065223a2274657874"
    "2f706c61696e3b20636861727365743d7574662d38222c2274696d657374616d70223a22323031352d"
    "30352d30375430313a32393a35315a222c2274616773223a7b2262617a223a22717578222c22666f6f"
    "223a22626172227d7d";
static const char vec_65[] =
    "42544c52311e5b7b226e616d65223a2274657374222c22636f6e74656e7454797065223a226170706c"
    "69636174696f6e2f6f637465742d73747265616d222c2274696d657374616d70223a22303030312d30"
    "312d30315430303a30303a30305a227d";
static const char vec_65_empty[] =
    "42544c52311e247b2274696d657374616d70223a22303030312d30312d30315430303a30303a30305a"
    "227d";
static const char vec_67[] = "42544c52311e107b226e616d65223a202274657374227d";

static void check_encode(const sb_stream_opts_t* opts, const char* ns, const char* hex) {
  sb__props_t props;
  sb__buf_t out = {0};
  size_t len;
  unsigned char* want = sb_test_unhex(hex, &len);
  ASSERT_OK(sb__props_from_opts(&props, opts, ns));
  ASSERT_OK(sb__handshake_encode(&props, &out));
  ASSERT_MEM_EQ(out.data, out.len, want, len);
  sb__props_free(&props);
  sb__buf_free(&out);
  free(want);
}

TEST_IMPL(handshake_encode_go_vectors) {
  sb_stream_opts_t o;
  sb_tag_t tags[] = {{"foo", "bar"}, {"baz", "qux"}};
  memset(&o, 0, sizeof(o));
  o.name = "test";
  o.timestamp_sec = TS_RECENT_SEC;
  o.timestamp_nsec = 7;
  check_encode(&o, NULL, vec_61); /* 6.1 text */
  o.type = SB_DATAGRAM;
  check_encode(&o, NULL, vec_62); /* 6.2 datagram */
  o.type = SB_BINARY;
  check_encode(&o, NULL, vec_63); /* 6.3 binary */
  /* 6.4: tags given unsorted come out sorted. */
  memset(&o, 0, sizeof(o));
  o.name = "test";
  o.timestamp_sec = INT64_C(1430962191); /* 2015-05-07T01:29:51Z */
  o.content_type = "text/plain; charset=utf-8";
  o.tags = tags;
  o.tag_count = 2;
  check_encode(&o, NULL, vec_64);
  /* The namespace is joined in front of the name. */
  memset(&o, 0, sizeof(o));
  o.name = "est";
  o.timestamp_sec = TS_RECENT_SEC;
  o.timestamp_nsec = 7;
  {
    sb__props_t p;
    ASSERT_OK(sb__props_from_opts(&p, &o, "t/"));
    ASSERT_STR_EQ(p.name, "t/est");
    sb__props_free(&p);
  }
}

TEST_IMPL(handshake_encode_zero_timestamp) {
  /* 6.5: properties with no timestamp encode Go's zero time. */
  sb__props_t p;
  sb__buf_t out = {0};
  size_t len;
  unsigned char* want = sb_test_unhex(vec_65, &len);
  memset(&p, 0, sizeof(p));
  p.name = "test";
  p.content_type = "application/octet-stream";
  ASSERT_OK(sb__handshake_encode(&p, &out));
  ASSERT_MEM_EQ(out.data, out.len, want, len);
  free(want);
  sb__buf_free(&out);
  /* 6.5 empty Flags{}: no name, no content type. */
  p.name = NULL;
  p.content_type = NULL;
  want = sb_test_unhex(vec_65_empty, &len);
  ASSERT_OK(sb__handshake_encode(&p, &out));
  ASSERT_MEM_EQ(out.data, out.len, want, len);
  free(want);
  sb__buf_free(&out);
}

TEST_IMPL(handshake_encode_escaping) {
  /* Content type and tag values carry Go's escaping; names are ASCII by rule. */
  sb_stream_opts_t o;
  sb_tag_t tag = {"k", "<a&b>\n\"\\\x01\xe2\x80\xa8\xff"};
  sb__props_t p;
  sb__buf_t out = {0};
  static const char want[] =
      "{\"name\":\"n\",\"contentType\":\"x\\u003cy\\u003e\\t\\b\\f\","
      "\"timestamp\":\"2016-02-03T04:05:06.1Z\",\"tags\":{\"k\":\"\\u003ca\\u0026b\\u003e"
      "\\n\\\"\\\\\\u0001\\u2028\\ufffd\"}}";
  memset(&o, 0, sizeof(o));
  o.name = "n";
  o.content_type = "x<y>\t\b\f";
  o.tags = &tag;
  o.tag_count = 1;
  o.timestamp_sec = TS_RECENT_SEC;
  o.timestamp_nsec = 100000000;
  ASSERT_OK(sb__props_from_opts(&p, &o, NULL));
  ASSERT_OK(sb__props_encode_json(&p, &out));
  ASSERT_MEM_EQ(out.data, out.len, want, strlen(want));
  sb__props_free(&p);
  sb__buf_free(&out);
}

TEST_IMPL(props_from_opts_errors) {
  sb_stream_opts_t o;
  sb__props_t p;
  sb_tag_t bad = {"bad+@!tag", "v"};
  memset(&o, 0, sizeof(o));
  ASSERT_ERR(sb__props_from_opts(&p, &o, NULL), SB_ENAME);
  o.name = "test;stream;name";
  ASSERT_ERR(sb__props_from_opts(&p, &o, NULL), SB_ENAME);
  o.name = "ok";
  o.tags = &bad;
  o.tag_count = 1;
  ASSERT_ERR(sb__props_from_opts(&p, &o, NULL), SB_ETAG);
  o.tag_count = 0;
  o.type = (sb_stream_type_t)7;
  ASSERT_ERR(sb__props_from_opts(&p, &o, NULL), SB_ETYPE);
  o.type = SB_TEXT;
  o.timestamp_nsec = 1000000000;
  ASSERT_ERR(sb__props_from_opts(&p, &o, NULL), SB_ETIMESTAMP);
  o.timestamp_nsec = 0;
  o.timestamp_sec = INT64_C(253402300800); /* year 10000 */
  ASSERT_ERR(sb__props_from_opts(&p, &o, NULL), SB_ETIMESTAMP);
  /* No timestamp means "now": some time after this test was written. */
  o.timestamp_sec = 0;
  ASSERT_OK(sb__props_from_opts(&p, &o, NULL));
  ASSERT_EQ(p.has_timestamp, 1);
  ASSERT_GT(p.timestamp.sec, INT64_C(1764000000));
  ASSERT_STR_EQ(p.content_type, "text/plain; charset=utf-8");
  sb__props_free(&p);
}

/* ---- handshake decoding ---- */

/*
 * Decodes hex (plus trailing payload bytes) with the given split size. Returns the
 * decoder's final result; on success *used is the handshake's length.
 */
static int decode_split(const unsigned char* b, size_t len, size_t split, sb__props_t* p,
                        size_t* total_used) {
  sb__handshake_t hs;
  size_t off = 0, used;
  int r = 0;
  sb__handshake_init(&hs, 0);
  *total_used = 0;
  while (off < len) {
    size_t n = len - off < split ? len - off : split;
    r = sb__handshake_feed(&hs, b + off, n, &used, p);
    ASSERT_LE(used, n);
    off += used;
    *total_used = off;
    if (r != 0)
      break;
    ASSERT_EQ(used, n); /* "need more" consumes everything */
  }
  if (r == 0)
    r = sb__handshake_eof(&hs);
  sb__handshake_destroy(&hs);
  return r;
}

static int decode_hex(const char* hex, sb__props_t* p) {
  size_t len, used;
  unsigned char* b = sb_test_unhex(hex, &len);
  int r1 = decode_split(b, len, len ? len : 1, p, &used);
  if (r1 == 1)
    sb__props_free(p);
  /* One byte at a time must give the same answer. */
  int r = decode_split(b, len, 1, p, &used);
  ASSERT_EQ(r, r1);
  if (r == 1)
    ASSERT_EQ(used, len);
  free(b);
  return r;
}

TEST_IMPL(handshake_decode_go_vectors) {
  sb__props_t p;
  ASSERT_EQ(decode_hex(vec_61, &p), 1);
  ASSERT_STR_EQ(p.name, "test");
  ASSERT_EQ(p.type, SB_TEXT);
  ASSERT_STR_EQ(p.content_type, "text/plain; charset=utf-8");
  ASSERT_EQ(p.has_timestamp, 1);
  ASSERT_EQ(p.timestamp.sec, TS_RECENT_SEC);
  ASSERT_EQ(p.timestamp.nsec, 7);
  ASSERT_EQ(p.tag_count, 0);
  sb__props_free(&p);

  ASSERT_EQ(decode_hex(vec_62, &p), 1);
  ASSERT_EQ(p.type, SB_DATAGRAM);
  ASSERT_STR_EQ(p.content_type, "application/x-logdog-datagram");
  sb__props_free(&p);

  ASSERT_EQ(decode_hex(vec_63, &p), 1);
  ASSERT_EQ(p.type, SB_BINARY);
  sb__props_free(&p);

  ASSERT_EQ(decode_hex(vec_64, &p), 1);
  ASSERT_EQ(p.type, SB_TEXT);
  ASSERT_EQ(p.tag_count, 2);
  ASSERT_STR_EQ(p.tags[0].key, "baz");
  ASSERT_STR_EQ(p.tags[0].value, "qux");
  ASSERT_STR_EQ(sb__props_get_tag(&p, "foo"), "bar");
  ASSERT_EQ(p.timestamp.sec, INT64_C(1430962191));
  sb__props_free(&p);

  /* 6.5: the zero time means "unset"; the type stays text. */
  ASSERT_EQ(decode_hex(vec_65, &p), 1);
  ASSERT_EQ(p.has_timestamp, 0);
  ASSERT_EQ(p.type, SB_TEXT);
  ASSERT_STR_EQ(p.content_type, "application/octet-stream");
  sb__props_free(&p);

  /* 6.5 empty Flags{}: rejected for its missing name. */
  ASSERT_ERR(decode_hex(vec_65_empty, &p), SB_ENONAME);

  /* 6.7: hand-written, with whitespace. */
  ASSERT_EQ(decode_hex(vec_67, &p), 1);
  ASSERT_STR_EQ(p.name, "test");
  ASSERT_STR_EQ(p.content_type, "text/plain; charset=utf-8");
  ASSERT_EQ(p.has_timestamp, 0);
  sb__props_free(&p);
}

TEST_IMPL(handshake_roundtrip_reencode) {
  /* Decoding then encoding the Go vectors gives the same bytes back. */
  const char* vecs[] = {vec_61, vec_62, vec_63, vec_64, vec_65};
  size_t i, len;
  for (i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++) {
    sb__props_t p;
    sb__buf_t out = {0};
    unsigned char* want = sb_test_unhex(vecs[i], &len);
    ASSERT_EQ(decode_hex(vecs[i], &p), 1);
    ASSERT_OK(sb__handshake_encode(&p, &out));
    ASSERT_MEM_EQ(out.data, out.len, want, len);
    sb__props_free(&p);
    sb__buf_free(&out);
    free(want);
  }
}

/* Builds magic + varint + json as hex-free bytes and decodes them. */
static int decode_json(const char* json, sb__props_t* p) {
  sb__buf_t b = {0};
  uint8_t v[SB_VARINT_MAX_LEN];
  size_t used;
  int r, r1;
  sb__buf_append(&b, SB_MAGIC, SB_MAGIC_LEN);
  sb__buf_append(&b, v, sb__varint_encode(strlen(json), v));
  sb__buf_append(&b, json, strlen(json));
  r1 = decode_split((unsigned char*)b.data, b.len, b.len, p, &used);
  if (r1 == 1)
    sb__props_free(p);
  r = decode_split((unsigned char*)b.data, b.len, 1, p, &used);
  ASSERT_EQ(r, r1);
  sb__buf_free(&b);
  return r;
}

TEST_IMPL(handshake_decode_rejects) {
  /* PROTOCOL.md 6.8, each with its own error. */
  static const struct {
    const char* hex;
    int err;
  } cases[] = {
      {"", SB_EMAGIC},
      {"55aa55aa55aa", SB_EMAGIC},
      {"4e4f5420412048414e445348414b45204d41474943", SB_EMAGIC},
      {"42544c52311e ffffffffffffffffff79", SB_EVARINT},
      {"42544c52311e 818040", SB_EFRAMESIZE},
      {"42544c52311e155b225468697320697320616e20617272617921225d", SB_ENOTOBJECT},
      {"42544c52311e0c7b7d", SB_ETRUNCATED},
      {"42544c52311e257b2274696d657374616d70223a2022746578742d666f722d736f6d652d726561736f"
       "6e227d",
       SB_ETIMESTAMP},
      {"42544c52311e07696e76616c6964", SB_EJSON},
      {"42544c5231", SB_ETRUNCATED},
      {"42544c52311e", SB_ETRUNCATED},
      {"42544c52311e80", SB_ETRUNCATED},
      {"42544c52311e00", SB_EJSON},
  };
  size_t i;
  sb__props_t p;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int r = decode_hex(cases[i].hex, &p);
    if (r != cases[i].err)
      sb_test_fail(__FILE__, __LINE__, "case %zu (%s): got %s, want %s", i, cases[i].hex,
                   sb_err_name(r), sb_err_name(cases[i].err));
  }
  ASSERT_ERR(decode_json("{\"name\": \"my/stream\", \"type\": \"XXX_whatisthis?\"}", &p),
             SB_ETYPE);
  ASSERT_ERR(decode_json("{\"name\": \"test;stream;name\"}", &p), SB_ENAME);
  ASSERT_ERR(decode_json("{\"name\":\"a\",\"tags\":{\"bad+@!tag\":\"v\"}}", &p), SB_ETAG);
}

TEST_IMPL(handshake_frame_size_limit) {
  /* 1,048,576 is allowed (the body is then read); 1,048,577 fails before any body. */
  sb__handshake_t hs;
  sb__props_t p;
  size_t used;
  size_t len;
  unsigned char* b = sb_test_unhex("42544c52311e808040", &len);
  sb__handshake_init(&hs, 0);
  ASSERT_EQ(sb__handshake_feed(&hs, b, len, &used, &p), 0);
  ASSERT_EQ(used, len);
  sb__handshake_destroy(&hs);
  free(b);
  b = sb_test_unhex("42544c52311e818040ffff", &len);
  sb__handshake_init(&hs, 0);
  ASSERT_ERR(sb__handshake_feed(&hs, b, len, &used, &p), SB_EFRAMESIZE);
  ASSERT_EQ(used, 0);
  sb__handshake_destroy(&hs);
  free(b);
  /* A smaller configured limit applies the same way. */
  b = sb_test_unhex("42544c52311e117b226e616d65223a2274657374227d", &len);
  sb__handshake_init(&hs, 16);
  ASSERT_ERR(sb__handshake_feed(&hs, b, len, &used, &p), SB_EFRAMESIZE);
  sb__handshake_destroy(&hs);
  free(b);
}

TEST_IMPL(handshake_stops_at_payload) {
  /* The payload after the frame is not consumed, in any split. */
  size_t len, used, split;
  unsigned char* hs = sb_test_unhex(vec_61, &len);
  unsigned char* all = malloc(len + 13);
  sb__props_t p;
  memcpy(all, hs, len);
  memcpy(all + len, "hello world!!", 13);
  for (split = 1; split <= len + 13; split += 7) {
    ASSERT_EQ(decode_split(all, len + 13, split, &p, &used), 1);
    ASSERT_EQ(used, len);
    sb__props_free(&p);
  }
  free(all);
  free(hs);
}

TEST_IMPL(handshake_decode_go_semantics) {
  sb__props_t p;
  /* The Python client's encoding: sorted keys, spaces, explicit text, no timestamp. */
  ASSERT_EQ(decode_json("{\"contentType\": \"text/x\", \"name\": \"py/stream\", "
                        "\"tags\": {\"a\": \"b\"}, \"type\": \"text\"}",
                        &p),
            1);
  ASSERT_STR_EQ(p.name, "py/stream");
  ASSERT_STR_EQ(p.content_type, "text/x");
  ASSERT_EQ(p.type, SB_TEXT);
  ASSERT_EQ(p.has_timestamp, 0);
  sb__props_free(&p);
  /* Keys match case-insensitively; the last duplicate wins; unknown keys are ignored,
   * including the historical ones. */
  ASSERT_EQ(decode_json("{\"NAME\":\"first\",\"Name\":\"second\",\"TYPE\":\"binary\","
                        "\"ContentType\":\"c\",\"tee\":\"stdout\",\"timeout\":\"5s\","
                        "\"ioKeepAlive\":true,\"x\":{\"y\":[1,2,{\"z\":null}]}}",
                        &p),
            1);
  ASSERT_STR_EQ(p.name, "second");
  ASSERT_EQ(p.type, SB_BINARY);
  ASSERT_STR_EQ(p.content_type, "c");
  sb__props_free(&p);
  /* Tags: a later "tags" replaces the earlier map; null means none; a null value is
   * the empty string. */
  ASSERT_EQ(decode_json("{\"name\":\"a\",\"tags\":{\"x\":\"1\"},\"tags\":{\"y\":null}}", &p),
            1);
  ASSERT_EQ(p.tag_count, 1);
  ASSERT_STR_EQ(sb__props_get_tag(&p, "y"), "");
  sb__props_free(&p);
  ASSERT_EQ(decode_json("{\"name\":\"a\",\"tags\":{\"x\":\"1\"},\"tags\":null}", &p), 1);
  ASSERT_EQ(p.tag_count, 0);
  sb__props_free(&p);
  /* Null timestamp and content type leave the defaults. */
  ASSERT_EQ(decode_json("{\"name\":\"a\",\"timestamp\":null,\"contentType\":null,"
                        "\"type\":\"datagram\"}",
                        &p),
            1);
  ASSERT_EQ(p.has_timestamp, 0);
  ASSERT_STR_EQ(p.content_type, "application/x-logdog-datagram");
  sb__props_free(&p);
  /* Trailing whitespace inside the frame is fine; anything else is not. */
  ASSERT_EQ(decode_json("{\"name\":\"a\"} \r\n\t", &p), 1);
  sb__props_free(&p);
  ASSERT_ERR(decode_json("{\"name\":\"a\"} x", &p), SB_ETRAILING);
  ASSERT_ERR(decode_json("{\"name\":\"a\"}{}", &p), SB_ETRAILING);
  /* Wrong JSON types for known keys. */
  ASSERT_ERR(decode_json("{\"name\":null}", &p), SB_ENAME);
  ASSERT_ERR(decode_json("{\"name\":\"\"}", &p), SB_ENAME);
  ASSERT_ERR(decode_json("{\"name\":5}", &p), SB_ENAME);
  ASSERT_ERR(decode_json("{\"name\":\"a\",\"type\":null}", &p), SB_ETYPE);
  ASSERT_ERR(decode_json("{\"name\":\"a\",\"type\":\"Text\"}", &p), SB_ETYPE);
  ASSERT_ERR(decode_json("{\"name\":\"a\",\"type\":1}", &p), SB_ETYPE);
  ASSERT_ERR(decode_json("{\"name\":\"a\",\"timestamp\":5}", &p), SB_ETIMESTAMP);
  ASSERT_ERR(decode_json("{\"name\":\"a\",\"timestamp\":\"\\u0032016-02-03T04:05:06Z\"}", &p),
             SB_ETIMESTAMP);
  ASSERT_ERR(decode_json("{\"name\":\"a\",\"tags\":[]}", &p), SB_ETAG);
  ASSERT_ERR(decode_json("{\"name\":\"a\",\"tags\":{\"k\":1}}", &p), SB_ETAG);
  ASSERT_ERR(decode_json("{\"name\":\"a\",\"contentType\":[]}", &p), SB_ECONTENTTYPE);
  ASSERT_ERR(decode_json("{\"name\":\"a\\u0000b\"}", &p), SB_ENAME);
  ASSERT_ERR(decode_json("{\"name\":\"a\",}", &p), SB_EJSON);
  ASSERT_ERR(decode_json("null", &p), SB_ENONAME);
  ASSERT_ERR(decode_json("\"str\"", &p), SB_ENOTOBJECT);
  ASSERT_ERR(decode_json("", &p), SB_EJSON);
}

/* ---- datagram framing ---- */

/* Parses all of buf in pieces of split bytes; collects datagrams as "len:hex;" text. */
static int parse_dgrams(const unsigned char* b, size_t len, size_t split, char* out,
                        size_t out_cap, uint64_t max) {
  sb__dgram_t d;
  sb__dgram_event_t ev;
  size_t off = 0, o = 0;
  uint64_t size = 0, got = 0;
  sb__dgram_init(&d, max);
  out[0] = '\0';
  while (off < len || d.pending_end) {
    size_t n = len - off < split ? len - off : split;
    int64_t r = sb__dgram_next(&d, b + off, n, &ev);
    if (r < 0)
      return (int)r;
    ASSERT_LE(r, n);
    if (ev.kind == SB__DGRAM_NONE)
      ASSERT_EQ(r, n); /* "need more" only when all it was given is used */
    off += (size_t)r;
    switch (ev.kind) {
    case SB__DGRAM_START:
      size = ev.size;
      got = 0;
      o += (size_t)snprintf(out + o, out_cap - o, "%" PRIu64 ":", size);
      break;
    case SB__DGRAM_DATA: {
      size_t i;
      got += ev.len;
      for (i = 0; i < ev.len; i++)
        o += (size_t)snprintf(out + o, out_cap - o, "%02x", ev.data[i]);
      break;
    }
    case SB__DGRAM_END:
      ASSERT_UEQ(got, size);
      o += (size_t)snprintf(out + o, out_cap - o, ";");
      break;
    default:
      break;
    }
  }
  {
    uint64_t ends = 0;
    const char* c;
    for (c = out; *c; c++)
      ends += *c == ';';
    ASSERT_UEQ(d.count, ends);
  }
  return sb__dgram_eof(&d);
}

TEST_IMPL(datagram_vectors) {
  char out[512];
  size_t len, split;
  /* 6.10: {ca fe}, {}, {d0 65 10 bb 12} */
  unsigned char* b = sb_test_unhex("02cafe0005d06510bb12", &len);
  for (split = 1; split <= len; split++) {
    ASSERT_OK(parse_dgrams(b, len, split, out, sizeof(out), 0));
    ASSERT_STR_EQ(out, "2:cafe;0:;5:d06510bb12;");
  }
  free(b);
  /* 6.2's payload: "hello world!!", "how's the weather?" */
  b = sb_test_unhex("0d68656c6c6f20776f726c64212112686f7727732074686520776561746865723f",
                    &len);
  ASSERT_OK(parse_dgrams(b, len, 3, out, sizeof(out), 0));
  ASSERT_STR_EQ(out, "13:68656c6c6f20776f726c642121;18:686f7727732074686520776561746865723f;");
  free(b);
}

TEST_IMPL(datagram_limits_and_truncation) {
  char out[512];
  size_t len;
  unsigned char* b;
  sb__dgram_t d;
  sb__dgram_event_t ev;
  /* Exactly 10 MiB is allowed; one more byte is too large. */
  b = sb_test_unhex("80808005", &len);
  sb__dgram_init(&d, 0);
  ASSERT_EQ(sb__dgram_next(&d, b, len, &ev), 4);
  ASSERT_EQ(ev.kind, SB__DGRAM_START);
  ASSERT_UEQ(ev.size, SB_MAX_DATAGRAM_SIZE);
  free(b);
  b = sb_test_unhex("81808005", &len);
  ASSERT_ERR(parse_dgrams(b, len, 1, out, sizeof(out), 0), SB_ETOOBIG);
  free(b);
  /* A configured smaller limit. */
  b = sb_test_unhex("03616263", &len);
  ASSERT_ERR(parse_dgrams(b, len, 1, out, sizeof(out), 2), SB_ETOOBIG);
  free(b);
  b = sb_test_unhex("ffffffffffffffffff7f", &len);
  ASSERT_ERR(parse_dgrams(b, len, 1, out, sizeof(out), 0), SB_EVARINT);
  free(b);
  /* A truncated trailing header at EOF is discarded. */
  b = sb_test_unhex("0161 80", &len);
  ASSERT_OK(parse_dgrams(b, len, 1, out, sizeof(out), 0));
  ASSERT_STR_EQ(out, "1:61;");
  free(b);
  /* A truncated body is an error at EOF. */
  b = sb_test_unhex("0361", &len);
  ASSERT_ERR(parse_dgrams(b, len, 1, out, sizeof(out), 0), SB_ETRUNCATED);
  free(b);
}
