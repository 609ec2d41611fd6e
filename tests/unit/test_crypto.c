/* SPDX-License-Identifier: MIT */
/*
 * Unit test of crypto/: IEEE P1619 XTS-AES-256 vectors 10-14 through
 * bal_xts_crypt, the data-path properties (in place, tweak per block,
 * per-thread contexts), key wrapping and its failure modes, master key
 * files and key-provider commands, customer keys, RFC 5869 HKDF vectors,
 * AES-256-GCM sealing, and a throughput figure (printed, not asserted).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/check.h"
#include "crypto/crypto.h"



static char tmpdir[] = "/tmp/test_crypto.XXXXXX";

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = strlen(s) / 2;

	CHECK(strlen(s) % 2 == 0 && n <= cap);
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		CHECK(sscanf(s + 2 * i, "%2x", &v) == 1);
		out[i] = (uint8_t)v;
	}
	return n;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- XTS ---------------------------------------------------------------- */

/*
 * IEEE Std 1619-2007 Annex B, vectors 10-14: XTS-AES-256, one 512-byte data
 * unit, plaintext bytes 00..ff twice.  Key1 = digits of e, Key2 = digits of pi.
 */
static const char ieee_key[] =
	"2718281828459045235360287471352662497757247093699959574966967627"
	"3141592653589793238462643383279502884197169399375105820974944592";

static const struct {
	int number;
	uint64_t dun;	/* data unit sequence number */
	const char *ct;
} ieee_vec[] = {
	{ 10, UINT64_C(0xff),
	  "1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b"
	  "5d31e276f8fe4a8d66b317f9ac683f44680a86ac35adfc3345befecb4bb188fd"
	  "5776926c49a3095eb108fd1098baec70aaa66999a72a82f27d848b21d4a741b0"
	  "c5cd4d5fff9dac89aeba122961d03a757123e9870f8acf1000020887891429ca"
	  "2a3e7a7d7df7b10355165c8b9a6d0a7de8b062c4500dc4cd120c0f7418dae3d0"
	  "b5781c34803fa75421c790dfe1de1834f280d7667b327f6c8cd7557e12ac3a0f"
	  "93ec05c52e0493ef31a12d3d9260f79a289d6a379bc70c50841473d1a8cc81ec"
	  "583e9645e07b8d9670655ba5bbcfecc6dc3966380ad8fecb17b6ba02469a020a"
	  "84e18e8f84252070c13e9f1f289be54fbc481457778f616015e1327a02b140f1"
	  "505eb309326d68378f8374595c849d84f4c333ec4423885143cb47bd71c5edae"
	  "9be69a2ffeceb1bec9de244fbe15992b11b77c040f12bd8f6a975a44a0f90c29"
	  "a9abc3d4d893927284c58754cce294529f8614dcd2aba991925fedc4ae74ffac"
	  "6e333b93eb4aff0479da9a410e4450e0dd7ae4c6e2910900575da401fc07059f"
	  "645e8b7e9bfdef33943054ff84011493c27b3429eaedb4ed5376441a77ed4385"
	  "1ad77f16f541dfd269d50d6a5f14fb0aab1cbb4c1550be97f7ab4066193c4caa"
	  "773dad38014bd2092fa755c824bb5e54c4f36ffda9fcea70b9c6e693e148c151" },
	{ 11, UINT64_C(0xffff),
	  "77a31251618a15e6b92d1d66dffe7b50b50bad552305ba0217a610688eff7e11"
	  "e1d0225438e093242d6db274fde801d4cae06f2092c728b2478559df58e837c2"
	  "469ee4a4fa794e4bbc7f39bc026e3cb72c33b0888f25b4acf56a2a9804f1ce6d"
	  "3d6e1dc6ca181d4b546179d55544aa7760c40d06741539c7e3cd9d2f6650b201"
	  "3fd0eeb8c2b8e3d8d240ccae2d4c98320a7442e1c8d75a42d6e6cfa4c2eca179"
	  "8d158c7aecdf82490f24bb9b38e108bcda12c3faf9a21141c3613b58367f922a"
	  "aa26cd22f23d708dae699ad7cb40a8ad0b6e2784973dcb605684c08b8d6998c6"
	  "9aac049921871ebb65301a4619ca80ecb485a31d744223ce8ddc2394828d6a80"
	  "470c092f5ba413c3378fa6054255c6f9df4495862bbb3287681f931b687c888a"
	  "bf844dfc8fc28331e579928cd12bd2390ae123cf03818d14dedde5c0c24c8ab0"
	  "18bfca75ca096f2d531f3d1619e785f1ada437cab92e980558b3dce1474afb75"
	  "bfedbf8ff54cb2618e0244c9ac0d3c66fb51598cd2db11f9be39791abe447c63"
	  "094f7c453b7ff87cb5bb36b7c79efb0872d17058b83b15ab0866ad8a58656c5a"
	  "7e20dbdf308b2461d97c0ec0024a2715055249cf3b478ddd4740de654f75ca68"
	  "6e0d7345c69ed50cdc2a8b332b1f8824108ac937eb050585608ee734097fc090"
	  "54fbff89eeaeea791f4a7ab1f9868294a4f9e27b42af8100cb9d59cef9645803" },
	{ 12, UINT64_C(0xffffff),
	  "e387aaa58ba483afa7e8eb469778317ecf4cf573aa9d4eac23f2cdf914e4e200"
	  "a8b490e42ee646802dc6ee2b471b278195d60918ececb44bf79966f83faba049"
	  "9298ebc699c0c8634715a320bb4f075d622e74c8c932004f25b41e361025b5a8"
	  "7815391f6108fc4afa6a05d9303c6ba68a128a55705d415985832fdeaae6c8e1"
	  "9110e84d1b1f199a2692119edc96132658f09da7c623efcec712537a3d94c0bf"
	  "5d7e352ec94ae5797fdb377dc1551150721adf15bd26a8efc2fcaad56881fa9e"
	  "62462c28f30ae1ceaca93c345cf243b73f542e2074a705bd2643bb9f7cc79bb6"
	  "e7091ea6e232df0f9ad0d6cf502327876d82207abf2115cdacf6d5a48f6c1879"
	  "a65b115f0f8b3cb3c59d15dd8c769bc014795a1837f3901b5845eb491adfefe0"
	  "97b1fa30a12fc1f65ba22905031539971a10f2f36c321bb51331cdefb39e3964"
	  "c7ef079994f5b69b2edd83a71ef549971ee93f44eac3938fcdd61d01fa71799d"
	  "a3a8091c4c48aa9ed263ff0749df95d44fef6a0bb578ec69456aa5408ae32c7a"
	  "f08ad7ba8921287e3bbee31b767be06a0e705c864a769137df28292283ea81a2"
	  "480241b44d9921cdbec1bc28dc1fda114bd8e5217ac9d8ebafa720e9da4f9ace"
	  "231cc949e5b96fe76ffc21063fddc83a6b8679c00d35e09576a875305bed5f36"
	  "ed242c8900dd1fa965bc950dfce09b132263a1eef52dd6888c309f5a7d712826" },
	{ 13, UINT64_C(0xffffffff),
	  "bf53d2dade78e822a4d949a9bc6766b01b06a8ef70d26748c6a7fc36d80ae4c5"
	  "520f7c4ab0ac8544424fa405162fef5a6b7f229498063618d39f0003cb5fb8d1"
	  "c86b643497da1ff945c8d3bedeca4f479702a7a735f043ddb1d6aaade3c4a0ac"
	  "7ca7f3fa5279bef56f82cd7a2f38672e824814e10700300a055e1630b8f1cb0e"
	  "919f5e942010a416e2bf48cb46993d3cb6a51c19bacf864785a00bc2ecff15d3"
	  "50875b246ed53e68be6f55bd7e05cfc2b2ed6432198a6444b6d8c247fab941f5"
	  "69768b5c429366f1d3f00f0345b96123d56204c01c63b22ce78baf116e525ed9"
	  "0fdea39fa469494d3866c31e05f295ff21fea8d4e6e13d67e47ce722e9698a1c"
	  "1048d68ebcde76b86fcf976eab8aa9790268b7068e017a8b9b749409514f1053"
	  "027fd16c3786ea1bac5f15cb79711ee2abe82f5cf8b13ae73030ef5b9e4457e7"
	  "5d1304f988d62dd6fc4b94ed38ba831da4b7634971b6cd8ec325d9c61c00f1df"
	  "73627ed3745a5e8489f3a95c69639c32cd6e1d537a85f75cc844726e8a72fc00"
	  "77ad22000f1d5078f6b866318c668f1ad03d5a5fced5219f2eabbd0aa5c0f460"
	  "d183f04404a0d6f469558e81fab24a167905ab4c7878502ad3e38fdbe62a4155"
	  "6cec37325759533ce8f25f367c87bb5578d667ae93f9e2fd99bcbc5f2fbba88c"
	  "f6516139420fcff3b7361d86322c4bd84c82f335abb152c4a93411373aaa8220" },
	{ 14, UINT64_C(0xffffffffff),
	  "64497e5a831e4a932c09be3e5393376daa599548b816031d224bbf50a818ed23"
	  "50eae7e96087c8a0db51ad290bd00c1ac1620857635bf246c176ab463be30b80"
	  "8da548081ac847b158e1264be25bb0910bbc92647108089415d45fab1b3d2604"
	  "e8a8eff1ae4020cfa39936b66827b23f371b92200be90251e6d73c5f86de5fd4"
	  "a950781933d79a28272b782a2ec313efdfcc0628f43d744c2dc2ff3dcb66999b"
	  "50c7ca895b0c64791eeaa5f29499fb1c026f84ce5b5c72ba1083cddb5ce45434"
	  "631665c333b60b11593fb253c5179a2c8db813782a004856a1653011e93fb6d8"
	  "76c18366dd8683f53412c0c180f9c848592d593f8609ca736317d356e13e2bff"
	  "3a9f59cd9aeb19cd482593d8c46128bb32423b37a9adfb482b99453fbe25a41b"
	  "f6feb4aa0bef5ed24bf73c762978025482c13115e4015aac992e5613a3b5c2f6"
	  "85b84795cb6e9b2656d8c88157e52c42f978d8634c43d06fea928f2822e465aa"
	  "6576e9bf419384506cc3ce3c54ac1a6f67dc66f3b30191e698380bc999b05abc"
	  "e19dc0c6dcc2dd001ec535ba18deb2df1a101023108318c75dc98611a09dc48a"
	  "0acdec676fabdf222f07e026f059b672b56e5cbc8e1d21bbd867dd9272120546"
	  "81d70ea737134cdfce93b6f82ae22423274e58a0821cc5502e2d0ab4585e94de"
	  "6975be5e0b4efce51cd3e70c25a1fbbbd609d273ad5b0d59631c531f6a0a57b9" },
};

static void make_key(uint8_t seed, struct bal_xts_key **key)
{
	uint8_t raw[BAL_XTS_KEY_LEN];

	for (int i = 0; i < BAL_XTS_KEY_LEN; i++)
		raw[i] = (uint8_t)(seed + 7 * i);
	CHECK_RC(bal_xts_key_create(raw, key), 0);
}

static void test_ieee_vectors(void)
{
	uint8_t raw[BAL_XTS_KEY_LEN], pt[512], ct[512], buf[512];
	struct bal_xts_key *key;
	struct bal_xts_ctx *ctx;

	CHECK(unhex(ieee_key, raw, sizeof(raw)) == BAL_XTS_KEY_LEN);
	CHECK_RC(bal_xts_key_create(raw, &key), 0);
	CHECK_RC(bal_xts_ctx_create(key, &ctx), 0);
	for (int i = 0; i < 512; i++)
		pt[i] = (uint8_t)i;
	for (size_t v = 0; v < sizeof(ieee_vec) / sizeof(ieee_vec[0]); v++) {
		CHECK(unhex(ieee_vec[v].ct, ct, sizeof(ct)) == 512);
		CHECK_RC(bal_xts_crypt(ctx, true, 512, ieee_vec[v].dun, pt, buf, 512), 0);
		CHECK(memcmp(buf, ct, 512) == 0);
		CHECK_RC(bal_xts_crypt(ctx, false, 512, ieee_vec[v].dun, ct, buf, 512), 0);
		CHECK(memcmp(buf, pt, 512) == 0);
		/* In place, both ways. */
		memcpy(buf, pt, 512);
		CHECK_RC(bal_xts_crypt(ctx, true, 512, ieee_vec[v].dun, buf, buf, 512), 0);
		CHECK(memcmp(buf, ct, 512) == 0);
		CHECK_RC(bal_xts_crypt(ctx, false, 512, ieee_vec[v].dun, buf, buf, 512), 0);
		CHECK(memcmp(buf, pt, 512) == 0);
	}
	/* Two units in one call: the second uses the next sequence number. */
	{
		uint8_t two_pt[1024], two[1024], ct11[512];

		memcpy(two_pt, pt, 512);
		memcpy(two_pt + 512, pt, 512);
		unhex(ieee_vec[0].ct, ct, sizeof(ct));
		CHECK_RC(bal_xts_crypt(ctx, true, 512, 0xff, two_pt, two, 1024), 0);
		CHECK(memcmp(two, ct, 512) == 0);
		CHECK_RC(bal_xts_crypt(ctx, true, 512, 0x100, pt, ct11, 512), 0);
		CHECK(memcmp(two + 512, ct11, 512) == 0);
	}
	bal_xts_ctx_destroy(ctx);
	bal_xts_key_destroy(key);
	printf("IEEE P1619 XTS-AES-256 vectors 10-14: ok\n");
}

static void test_xts_rules(void)
{
	static uint8_t pt[4 * BAL_XTS_UNIT], a[4 * BAL_XTS_UNIT], b[4 * BAL_XTS_UNIT];
	uint8_t raw[BAL_XTS_KEY_LEN];
	struct bal_xts_key *key, *k2, *bad = NULL;
	struct bal_xts_ctx *ctx, *ctx2;

	/* Equal halves are refused at import. */
	memset(raw, 0x5a, sizeof(raw));
	CHECK_RC(bal_xts_key_create(raw, &bad), -EINVAL);
	CHECK(bad == NULL);
	raw[63] ^= 1;
	CHECK_RC(bal_xts_key_create(raw, &bad), 0);
	bal_xts_key_destroy(bad);

	for (size_t i = 0; i < sizeof(pt); i++)
		pt[i] = (uint8_t)(i * 31 + 3);
	make_key(1, &key);
	CHECK_RC(bal_xts_ctx_create(key, &ctx), 0);

	/* In place == out of place, and decrypt inverts. */
	CHECK_RC(bal_xts_encrypt(ctx, 1000, pt, a, sizeof(pt)), 0);
	memcpy(b, pt, sizeof(pt));
	CHECK_RC(bal_xts_encrypt(ctx, 1000, b, b, sizeof(b)), 0);
	CHECK(memcmp(a, b, sizeof(a)) == 0);
	CHECK(memcmp(a, pt, sizeof(a)) != 0);
	CHECK_RC(bal_xts_decrypt(ctx, 1000, a, a, sizeof(a)), 0);
	CHECK(memcmp(a, pt, sizeof(a)) == 0);

	/* A multi-unit call equals unit-by-unit calls at consecutive blocks. */
	CHECK_RC(bal_xts_encrypt(ctx, 77, pt, a, sizeof(pt)), 0);
	for (int u = 0; u < 4; u++)
		CHECK_RC(bal_xts_encrypt(ctx, 77 + (uint64_t)u, pt + u * BAL_XTS_UNIT,
					 b + u * BAL_XTS_UNIT, BAL_XTS_UNIT), 0);
	CHECK(memcmp(a, b, sizeof(a)) == 0);

	/* The tweak changes with the block number: same plaintext, other block. */
	memset(b, 0xab, 2 * BAL_XTS_UNIT);
	CHECK_RC(bal_xts_encrypt(ctx, 0, b, a, 2 * BAL_XTS_UNIT), 0);
	CHECK(memcmp(a, a + BAL_XTS_UNIT, BAL_XTS_UNIT) != 0);
	CHECK_RC(bal_xts_encrypt(ctx, 1, b, b, BAL_XTS_UNIT), 0);
	CHECK(memcmp(a + BAL_XTS_UNIT, b, BAL_XTS_UNIT) == 0);
	/* And is deterministic: what snapshots and clones rely on. */
	memset(b, 0xab, BAL_XTS_UNIT);
	CHECK_RC(bal_xts_encrypt(ctx, 0, b, b, BAL_XTS_UNIT), 0);
	CHECK(memcmp(a, b, BAL_XTS_UNIT) == 0);
	/* Bits above 2^32 of the block number count too. */
	CHECK_RC(bal_xts_encrypt(ctx, UINT64_C(1) << 40, pt, a, BAL_XTS_UNIT), 0);
	CHECK_RC(bal_xts_encrypt(ctx, 0, pt, b, BAL_XTS_UNIT), 0);
	CHECK(memcmp(a, b, BAL_XTS_UNIT) != 0);

	/* Another key gives other ciphertext; a second context the same. */
	make_key(2, &k2);
	CHECK_RC(bal_xts_ctx_create(k2, &ctx2), 0);
	CHECK_RC(bal_xts_encrypt(ctx2, 5, pt, a, BAL_XTS_UNIT), 0);
	CHECK_RC(bal_xts_encrypt(ctx, 5, pt, b, BAL_XTS_UNIT), 0);
	CHECK(memcmp(a, b, BAL_XTS_UNIT) != 0);
	bal_xts_ctx_destroy(ctx2);
	CHECK_RC(bal_xts_ctx_create(key, &ctx2), 0);
	CHECK_RC(bal_xts_encrypt(ctx2, 5, pt, a, BAL_XTS_UNIT), 0);
	CHECK(memcmp(a, b, BAL_XTS_UNIT) == 0);
	bal_xts_ctx_destroy(ctx2);
	bal_xts_key_destroy(k2);

	/* Lengths and block numbers. */
	CHECK_RC(bal_xts_encrypt(ctx, 0, pt, a, 0), 0);
	CHECK_RC(bal_xts_encrypt(ctx, 0, pt, a, 512), -EINVAL);
	CHECK_RC(bal_xts_encrypt(ctx, 0, pt, a, BAL_XTS_UNIT + 16), -EINVAL);
	CHECK_RC(bal_xts_crypt(ctx, true, 24, 0, pt, a, 48), -EINVAL);
	CHECK_RC(bal_xts_crypt(ctx, true, 8, 0, pt, a, 16), -EINVAL);
	CHECK_RC(bal_xts_encrypt(ctx, UINT64_MAX, pt, a, BAL_XTS_UNIT), 0);
	CHECK_RC(bal_xts_encrypt(ctx, UINT64_MAX, pt, a, 2 * BAL_XTS_UNIT), -EINVAL);
	CHECK_RC(bal_xts_decrypt(ctx, UINT64_MAX, a, a, BAL_XTS_UNIT), 0);
	CHECK(memcmp(a, pt, BAL_XTS_UNIT) == 0);

	bal_xts_ctx_destroy(ctx);
	bal_xts_key_destroy(key);
	bal_xts_ctx_destroy(NULL);
	bal_xts_key_destroy(NULL);

	/* Generated keys: distinct, usable. */
	CHECK_RC(bal_xts_key_generate(&key), 0);
	CHECK_RC(bal_xts_key_generate(&k2), 0);
	CHECK_RC(bal_xts_ctx_create(key, &ctx), 0);
	CHECK_RC(bal_xts_ctx_create(k2, &ctx2), 0);
	CHECK_RC(bal_xts_encrypt(ctx, 9, pt, a, BAL_XTS_UNIT), 0);
	CHECK_RC(bal_xts_encrypt(ctx2, 9, pt, b, BAL_XTS_UNIT), 0);
	CHECK(memcmp(a, b, BAL_XTS_UNIT) != 0);
	CHECK_RC(bal_xts_decrypt(ctx, 9, a, a, BAL_XTS_UNIT), 0);
	CHECK(memcmp(a, pt, BAL_XTS_UNIT) == 0);
	bal_xts_ctx_destroy(ctx);
	bal_xts_ctx_destroy(ctx2);
	bal_xts_key_destroy(key);
	bal_xts_key_destroy(k2);
	printf("XTS rules: ok\n");
}

/* ---- throughput and per-thread contexts ---------------------------------- */

#define BENCH_BUF (1u << 20)
#define BENCH_BYTES (256ull << 20)

struct bench_arg {
	const struct bal_xts_key *key;
	uint64_t base;
	int ok;
	double secs;
};

static void *bench_thread(void *p)
{
	struct bench_arg *a = p;
	struct bal_xts_ctx *ctx;
	uint8_t *buf = malloc(BENCH_BUF), *ref = malloc(BENCH_BUF);
	double t0;

	a->ok = 0;
	if (!buf || !ref || bal_xts_ctx_create(a->key, &ctx) != 0)
		goto out;
	for (size_t i = 0; i < BENCH_BUF; i++)
		buf[i] = ref[i] = (uint8_t)i;
	t0 = now_s();
	for (uint64_t done = 0; done < BENCH_BYTES; done += BENCH_BUF)
		if (bal_xts_encrypt(ctx, a->base + done / BAL_XTS_UNIT, buf, buf, BENCH_BUF) != 0)
			goto out_ctx;
	a->secs = now_s() - t0;
	/* Undo every pass in reverse order: must give back the input. */
	for (uint64_t done = BENCH_BYTES; done > 0; done -= BENCH_BUF)
		if (bal_xts_decrypt(ctx, a->base + (done - BENCH_BUF) / BAL_XTS_UNIT, buf, buf,
				    BENCH_BUF) != 0)
			goto out_ctx;
	a->ok = memcmp(buf, ref, BENCH_BUF) == 0;
out_ctx:
	bal_xts_ctx_destroy(ctx);
out:
	free(buf);
	free(ref);
	return NULL;
}

static void test_throughput(void)
{
	struct bench_arg args[2];
	pthread_t th[2];
	struct bal_xts_key *key;
	double slow;

	CHECK_RC(bal_xts_key_generate(&key), 0);
	args[0] = (struct bench_arg){ .key = key, .base = 0 };
	bench_thread(&args[0]);
	CHECK(args[0].ok);
	printf("AES-256-XTS, 4 KiB units, 1 thread: %.0f MiB/s\n",
	       (double)BENCH_BYTES / (1 << 20) / args[0].secs);

	/* Two workers, one shared key, a context each: no lock, both at speed. */
	for (int i = 0; i < 2; i++) {
		args[i] = (struct bench_arg){ .key = key, .base = (uint64_t)i << 32 };
		CHECK(pthread_create(&th[i], NULL, bench_thread, &args[i]) == 0);
	}
	for (int i = 0; i < 2; i++)
		CHECK(pthread_join(th[i], NULL) == 0);
	CHECK(args[0].ok && args[1].ok);
	slow = args[0].secs > args[1].secs ? args[0].secs : args[1].secs;
	printf("AES-256-XTS, 4 KiB units, 2 threads (own contexts, one key): %.0f MiB/s total\n",
	       2.0 * (double)BENCH_BYTES / (1 << 20) / slow);
	bal_xts_key_destroy(key);
}

/* ---- master key, wrapping ------------------------------------------------ */

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed ^ (i * 13 + 1));
}

static bool same_key(const struct bal_xts_key *a, const struct bal_xts_key *b)
{
	static uint8_t pt[BAL_XTS_UNIT], ca[BAL_XTS_UNIT], cb[BAL_XTS_UNIT];
	struct bal_xts_ctx *x, *y;

	fill(pt, sizeof(pt), 9);
	CHECK_RC(bal_xts_ctx_create(a, &x), 0);
	CHECK_RC(bal_xts_ctx_create(b, &y), 0);
	CHECK_RC(bal_xts_encrypt(x, 3, pt, ca, sizeof(pt)), 0);
	CHECK_RC(bal_xts_encrypt(y, 3, pt, cb, sizeof(pt)), 0);
	bal_xts_ctx_destroy(x);
	bal_xts_ctx_destroy(y);
	return memcmp(ca, cb, sizeof(ca)) == 0;
}

static bool same_mk(const struct bal_mk *a, const struct bal_mk *b)
{
	uint8_t ka[BAL_MK_KCV_LEN], kb[BAL_MK_KCV_LEN];

	CHECK_RC(bal_mk_kcv(a, ka), 0);
	CHECK_RC(bal_mk_kcv(b, kb), 0);
	return memcmp(ka, kb, sizeof(ka)) == 0;
}

/* A blob made by hand in the documented format (for the equal-halves case). */
static void hand_blob(const uint8_t mkraw[BAL_MK_LEN], const char *id,
		      const uint8_t raw[BAL_XTS_KEY_LEN], uint8_t blob[BAL_KW_BLOB_LEN])
{
	uint8_t aad[128];
	size_t n = sizeof("ballast-kw-v1");

	memcpy(aad, "ballast-kw-v1", n);
	memcpy(aad + n, id, strlen(id));
	blob[0] = 1;
	CHECK_RC(bal_gcm_seal(mkraw, aad, n + strlen(id), raw, BAL_XTS_KEY_LEN, blob + 1), 0);
}

static void test_wrap(void)
{
	uint8_t mkraw[BAL_MK_LEN], raw[BAL_XTS_KEY_LEN], blob[BAL_KW_BLOB_LEN],
		blob2[BAL_KW_BLOB_LEN], kcv[BAL_MK_KCV_LEN], kcv2[BAL_MK_KCV_LEN];
	struct bal_mk *mk, *other;
	struct bal_xts_key *key, *back = NULL;

	fill(mkraw, sizeof(mkraw), 0x11);
	CHECK_RC(bal_mk_create(mkraw, &mk), 0);
	mkraw[0] ^= 0x80;
	CHECK_RC(bal_mk_create(mkraw, &other), 0);
	mkraw[0] ^= 0x80;

	/* KCV: deterministic, differs between keys, verify refuses a wrong key. */
	CHECK_RC(bal_mk_kcv(mk, kcv), 0);
	CHECK_RC(bal_mk_kcv(mk, kcv2), 0);
	CHECK(memcmp(kcv, kcv2, sizeof(kcv)) == 0);
	CHECK_RC(bal_mk_verify_kcv(mk, kcv), 0);
	CHECK_RC(bal_mk_verify_kcv(other, kcv), -EKEYREJECTED);
	CHECK_RC(bal_mk_kcv(other, kcv2), 0);
	CHECK(memcmp(kcv, kcv2, sizeof(kcv)) != 0);

	CHECK_RC(bal_xts_key_generate(&key), 0);
	CHECK_RC(bal_kw_wrap(mk, "vol-0001", key, blob), 0);
	CHECK_RC(bal_kw_wrap(mk, "vol-0001", key, blob2), 0);
	CHECK(memcmp(blob, blob2, sizeof(blob)) != 0); /* fresh nonce each time */
	CHECK_RC(bal_kw_unwrap(mk, "vol-0001", blob, sizeof(blob), &back), 0);
	CHECK(same_key(key, back));
	bal_xts_key_destroy(back);
	CHECK_RC(bal_kw_unwrap(mk, "vol-0001", blob2, sizeof(blob2), &back), 0);
	CHECK(same_key(key, back));
	bal_xts_key_destroy(back);
	back = NULL;

	/* Wrong master key, wrong volume id, every flipped bit, bad length. */
	CHECK_RC(bal_kw_unwrap(other, "vol-0001", blob, sizeof(blob), &back), -EKEYREJECTED);
	CHECK_RC(bal_kw_unwrap(mk, "vol-0002", blob, sizeof(blob), &back), -EKEYREJECTED);
	CHECK_RC(bal_kw_unwrap(mk, "vol-000", blob, sizeof(blob), &back), -EKEYREJECTED);
	for (size_t bit = 0; bit < 8 * sizeof(blob); bit++) {
		memcpy(blob2, blob, sizeof(blob));
		blob2[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		CHECK_RC(bal_kw_unwrap(mk, "vol-0001", blob2, sizeof(blob2), &back), -EKEYREJECTED);
	}
	CHECK_RC(bal_kw_unwrap(mk, "vol-0001", blob, sizeof(blob) - 1, &back), -EKEYREJECTED);
	CHECK_RC(bal_kw_unwrap(mk, "vol-0001", blob, 0, &back), -EKEYREJECTED);
	CHECK_RC(bal_kw_unwrap(mk, "", blob, sizeof(blob), &back), -EINVAL);
	CHECK_RC(bal_kw_wrap(mk, "", key, blob2), -EINVAL);
	CHECK(back == NULL);

	/* A blob that authenticates but holds a key with equal halves. */
	fill(raw, sizeof(raw), 0x22);
	hand_blob(mkraw, "vol-7", raw, blob2);
	CHECK_RC(bal_kw_unwrap(mk, "vol-7", blob2, sizeof(blob2), &back), 0);
	bal_xts_key_destroy(back);
	back = NULL;
	memcpy(raw + 32, raw, 32);
	hand_blob(mkraw, "vol-7", raw, blob2);
	CHECK_RC(bal_kw_unwrap(mk, "vol-7", blob2, sizeof(blob2), &back), -EKEYREJECTED);
	CHECK(back == NULL);

	/* Rotation: unwrap under the old master, wrap under the new one. */
	CHECK_RC(bal_kw_unwrap(mk, "vol-0001", blob, sizeof(blob), &back), 0);
	CHECK_RC(bal_kw_wrap(other, "vol-0001", back, blob2), 0);
	bal_xts_key_destroy(back);
	CHECK_RC(bal_kw_unwrap(other, "vol-0001", blob2, sizeof(blob2), &back), 0);
	CHECK(same_key(key, back));
	bal_xts_key_destroy(back);

	bal_xts_key_destroy(key);
	bal_mk_destroy(mk);
	bal_mk_destroy(other);
	bal_mk_destroy(NULL);
	printf("key wrap, KCV: ok\n");
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK(write(fd, data, len) == (ssize_t)len);
	CHECK(fchmod(fd, mode) == 0);
	close(fd);
}

static const char mk_hex[] = "000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F";

static void test_master_file(void)
{
	uint8_t raw[BAL_MK_LEN], junk[100];
	struct bal_mk *ref, *mk = NULL;
	char path[256], link[256];
	char text[80];

	for (int i = 0; i < BAL_MK_LEN; i++)
		raw[i] = (uint8_t)i;
	CHECK_RC(bal_mk_create(raw, &ref), 0);
	snprintf(path, sizeof(path), "%s/mk", tmpdir);

	/* 32 raw bytes, 0600. */
	write_file(path, raw, sizeof(raw), 0600);
	CHECK_RC(bal_mk_load_file(path, &mk), 0);
	CHECK(same_mk(mk, ref));
	bal_mk_destroy(mk);
	/* 64 hex digits, with and without a newline; 0400 is fine too. */
	write_file(path, mk_hex, 64, 0400);
	CHECK_RC(bal_mk_load_file(path, &mk), 0);
	CHECK(same_mk(mk, ref));
	bal_mk_destroy(mk);
	snprintf(text, sizeof(text), "%s\n", mk_hex);
	write_file(path, text, 65, 0600);
	CHECK_RC(bal_mk_load_file(path, &mk), 0);
	CHECK(same_mk(mk, ref));
	bal_mk_destroy(mk);
	/* Through a symlink: the target's mode counts. */
	snprintf(link, sizeof(link), "%s/mk-link", tmpdir);
	unlink(link);
	CHECK(symlink(path, link) == 0);
	CHECK_RC(bal_mk_load_file(link, &mk), 0);
	bal_mk_destroy(mk);
	mk = NULL;

	/* Permissions. */
	write_file(path, raw, sizeof(raw), 0644);
	CHECK_RC(bal_mk_load_file(path, &mk), -EACCES);
	write_file(path, raw, sizeof(raw), 0640);
	CHECK_RC(bal_mk_load_file(path, &mk), -EACCES);
	write_file(path, raw, sizeof(raw), 0602);
	CHECK_RC(bal_mk_load_file(path, &mk), -EACCES);
	write_file(path, raw, sizeof(raw), 0620);
	CHECK_RC(bal_mk_load_file(link, &mk), -EACCES);

	/* Lengths and syntax. */
	fill(junk, sizeof(junk), 3);
	write_file(path, raw, 31, 0600);
	CHECK_RC(bal_mk_load_file(path, &mk), -EINVAL);
	write_file(path, junk, 33, 0600);
	CHECK_RC(bal_mk_load_file(path, &mk), -EINVAL);
	write_file(path, junk, 0, 0600);
	CHECK_RC(bal_mk_load_file(path, &mk), -EINVAL);
	write_file(path, mk_hex, 63, 0600);
	CHECK_RC(bal_mk_load_file(path, &mk), -EINVAL);
	snprintf(text, sizeof(text), "%s\n\n", mk_hex);
	write_file(path, text, 66, 0600);
	CHECK_RC(bal_mk_load_file(path, &mk), -EINVAL);
	memcpy(text, mk_hex, 64);
	text[10] = 'g';
	write_file(path, text, 64, 0600);
	CHECK_RC(bal_mk_load_file(path, &mk), -EINVAL);
	write_file(path, junk, sizeof(junk), 0600);
	CHECK_RC(bal_mk_load_file(path, &mk), -EINVAL);

	/* Not a regular file; missing. */
	CHECK_RC(bal_mk_load_file(tmpdir, &mk), -EINVAL);
	snprintf(path, sizeof(path), "%s/fifo", tmpdir);
	CHECK(mkfifo(path, 0600) == 0);
	CHECK_RC(bal_mk_load_file(path, &mk), -EINVAL);
	snprintf(path, sizeof(path), "%s/missing", tmpdir);
	CHECK_RC(bal_mk_load_file(path, &mk), -ENOENT);
	CHECK(mk == NULL);
	bal_mk_destroy(ref);
	printf("master key file: ok\n");
}

/* Is @pid gone (or a zombie nobody reaped)? */
static bool pid_gone(pid_t pid)
{
	char path[64], buf[256];
	FILE *f;
	bool gone = true;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return true;
	if (fgets(buf, sizeof(buf), f)) {
		char *p = strrchr(buf, ')');

		gone = p && p[1] == ' ' && p[2] == 'Z';
	}
	fclose(f);
	return gone;
}

static void test_provider(void)
{
	uint8_t raw[BAL_MK_LEN];
	struct bal_mk *ref, *mk = NULL;
	char cmd[512], path[256];
	double t0;
	FILE *f;
	int bg = 0;

	for (int i = 0; i < BAL_MK_LEN; i++)
		raw[i] = (uint8_t)i;
	CHECK_RC(bal_mk_create(raw, &ref), 0);

	snprintf(cmd, sizeof(cmd), "printf '%%s\\n' %s", mk_hex);
	CHECK_RC(bal_mk_run_provider(cmd, 5000, &mk), 0);
	CHECK(same_mk(mk, ref));
	bal_mk_destroy(mk);
	/* No newline; a provider that reads stdin sees EOF at once. */
	snprintf(cmd, sizeof(cmd), "cat; printf %s", mk_hex);
	CHECK_RC(bal_mk_run_provider(cmd, 5000, &mk), 0);
	CHECK(same_mk(mk, ref));
	bal_mk_destroy(mk);
	mk = NULL;

	/* Failures. */
	snprintf(cmd, sizeof(cmd), "echo %s; exit 1", mk_hex);
	CHECK_RC(bal_mk_run_provider(cmd, 5000, &mk), -EIO);
	CHECK_RC(bal_mk_run_provider("kill -9 $$", 5000, &mk), -EIO);
	CHECK_RC(bal_mk_run_provider("/nonexistent/provider", 5000, &mk), -EIO);
	CHECK_RC(bal_mk_run_provider("echo not-a-key", 5000, &mk), -EINVAL);
	CHECK_RC(bal_mk_run_provider("true", 5000, &mk), -EINVAL);
	CHECK_RC(bal_mk_run_provider("head -c 32 /dev/zero", 5000, &mk), -EINVAL);
	snprintf(cmd, sizeof(cmd), "echo %s; echo %s", mk_hex, mk_hex);
	CHECK_RC(bal_mk_run_provider(cmd, 5000, &mk), -EINVAL);
	CHECK_RC(bal_mk_run_provider("", 5000, &mk), -EINVAL);
	/* Huge or endless output is cut off and the provider killed. */
	CHECK_RC(bal_mk_run_provider("head -c 10000000 /dev/zero", 5000, &mk), -E2BIG);
	CHECK_RC(bal_mk_run_provider("yes", 5000, &mk), -E2BIG);
	/* A hang is killed after the timeout, with everything it started. */
	snprintf(path, sizeof(path), "%s/bgpid", tmpdir);
	snprintf(cmd, sizeof(cmd), "sleep 60 & echo $! > %s; sleep 60", path);
	t0 = now_s();
	CHECK_RC(bal_mk_run_provider(cmd, 300, &mk), -ETIMEDOUT);
	CHECK(now_s() - t0 < 5);
	f = fopen(path, "r");
	CHECK(f && fscanf(f, "%d", &bg) == 1 && bg > 0);
	fclose(f);
	for (int i = 0; i < 200 && !pid_gone(bg); i++)
		usleep(10000);
	CHECK(pid_gone(bg));
	/* Printing the key and then not exiting is a hang too. */
	snprintf(cmd, sizeof(cmd), "echo %s; exec sleep 60", mk_hex);
	CHECK_RC(bal_mk_run_provider(cmd, 300, &mk), -ETIMEDOUT);
	/* Ignoring SIGTERM does not help. */
	CHECK_RC(bal_mk_run_provider("trap '' TERM; sleep 60", 300, &mk), -ETIMEDOUT);
	CHECK(mk == NULL);
	bal_mk_destroy(ref);
	printf("key provider: ok\n");
}

/* ---- customer keys --------------------------------------------------------- */

static void test_customer_keys(void)
{
	uint8_t raw[64], other[64], big[65];
	struct bal_ck *ck, *ck64, *wrong, *loaded = NULL;
	struct bal_ck_record rec, rec2, rec64;
	struct bal_xts_key *k1, *k2, *k3 = NULL;
	char path[256];

	fill(raw, sizeof(raw), 0x31);
	fill(big, sizeof(big), 0x31);
	memcpy(other, raw, sizeof(other));
	other[5] ^= 4;
	CHECK_RC(bal_ck_create(raw, 32, &ck), 0);
	CHECK_RC(bal_ck_create(raw, 64, &ck64), 0);
	CHECK_RC(bal_ck_create(other, 32, &wrong), 0);
	CHECK_RC(bal_ck_create(raw, 16, &loaded), -EINVAL);
	CHECK_RC(bal_ck_create(raw, 48, &loaded), -EINVAL);

	CHECK_RC(bal_ck_enroll(ck, &rec), 0);
	CHECK_RC(bal_ck_enroll(ck, &rec2), 0);
	CHECK(memcmp(rec.salt, rec2.salt, sizeof(rec.salt)) != 0);
	CHECK(memcmp(rec.check, rec2.check, sizeof(rec.check)) != 0);

	/* The right key unlocks, twice to the same XTS key. */
	CHECK_RC(bal_ck_unlock(ck, &rec, "cvol", &k1), 0);
	CHECK_RC(bal_ck_unlock(ck, &rec, "cvol", &k2), 0);
	CHECK(same_key(k1, k2));
	bal_xts_key_destroy(k2);
	/* Another salt, another key. */
	CHECK_RC(bal_ck_unlock(ck, &rec2, "cvol", &k2), 0);
	CHECK(!same_key(k1, k2));
	bal_xts_key_destroy(k2);
	/* Wrong keys are refused. */
	CHECK_RC(bal_ck_unlock(wrong, &rec, "cvol", &k3), -EKEYREJECTED);
	CHECK_RC(bal_ck_unlock(ck64, &rec, "cvol", &k3), -EKEYREJECTED);
	rec2 = rec;
	rec2.check[31] ^= 1;
	CHECK_RC(bal_ck_unlock(ck, &rec2, "cvol", &k3), -EKEYREJECTED);
	rec2 = rec;
	rec2.salt[0] ^= 1;
	CHECK_RC(bal_ck_unlock(ck, &rec2, "cvol", &k3), -EKEYREJECTED);
	CHECK(k3 == NULL);
	/* 64-byte keys work the same way. */
	CHECK_RC(bal_ck_enroll(ck64, &rec64), 0);
	CHECK_RC(bal_ck_unlock(ck64, &rec64, "cvol", &k2), 0);
	CHECK_RC(bal_ck_unlock(ck, &rec64, "cvol", &k3), -EKEYREJECTED);
	bal_xts_key_destroy(k2);

	/* Key files: exactly 32 or 64 bytes, private. */
	snprintf(path, sizeof(path), "%s/ck", tmpdir);
	write_file(path, raw, 32, 0600);
	CHECK_RC(bal_ck_load_file(path, &loaded), 0);
	CHECK_RC(bal_ck_unlock(loaded, &rec, "cvol", &k2), 0);
	CHECK(same_key(k1, k2));
	bal_xts_key_destroy(k2);
	bal_ck_destroy(loaded);
	write_file(path, raw, 64, 0600);
	CHECK_RC(bal_ck_load_file(path, &loaded), 0);
	CHECK_RC(bal_ck_unlock(loaded, &rec64, "cvol", &k2), 0);
	bal_xts_key_destroy(k2);
	bal_ck_destroy(loaded);
	loaded = NULL;
	write_file(path, raw, 32, 0644);
	CHECK_RC(bal_ck_load_file(path, &loaded), -EACCES);
	write_file(path, raw, 33, 0600);
	CHECK_RC(bal_ck_load_file(path, &loaded), -EINVAL);
	write_file(path, big, sizeof(big), 0600);
	CHECK_RC(bal_ck_load_file(path, &loaded), -EINVAL);
	CHECK(loaded == NULL);

	bal_xts_key_destroy(k1);
	bal_ck_destroy(ck);
	bal_ck_destroy(ck64);
	bal_ck_destroy(wrong);
	bal_ck_destroy(NULL);
	printf("customer keys: ok\n");
}

/* ---- HKDF, GCM, secure memory ------------------------------------------------ */

static void test_hkdf(void)
{
	/* RFC 5869 Appendix A, test cases 1-3 (SHA-256). */
	static const struct {
		const char *ikm, *salt, *info, *okm;
	} tc[] = {
		{ "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "000102030405060708090a0b0c",
		  "f0f1f2f3f4f5f6f7f8f9",
		  "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865" },
		{ "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
		  "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
		  "404142434445464748494a4b4c4d4e4f",
		  "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
		  "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
		  "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
		  "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
		  "d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef"
		  "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
		  "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
		  "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
		  "cc30c58179ec3e87c14c01d5c1f3434f1d87" },
		{ "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "", "",
		  "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8" },
	};
	uint8_t ikm[80], salt[80], info[80], okm[82], out[82];

	for (size_t i = 0; i < sizeof(tc) / sizeof(tc[0]); i++) {
		size_t ni = unhex(tc[i].ikm, ikm, sizeof(ikm));
		size_t ns = unhex(tc[i].salt, salt, sizeof(salt));
		size_t nf = unhex(tc[i].info, info, sizeof(info));
		size_t no = unhex(tc[i].okm, okm, sizeof(okm));

		CHECK_RC(bal_hkdf_sha256(ns ? salt : NULL, ns, ikm, ni, nf ? info : NULL, nf, out,
					 no), 0);
		CHECK(memcmp(out, okm, no) == 0);
	}
	CHECK_RC(bal_hkdf_sha256(NULL, 0, ikm, 22, NULL, 0, out, 0), -EINVAL);
	CHECK_RC(bal_hkdf_sha256(NULL, 0, ikm, 22, NULL, 0, out, BAL_HKDF_OUT_MAX + 1), -EINVAL);
	CHECK_RC(bal_hkdf_sha256(NULL, 5, ikm, 22, NULL, 0, out, 32), -EINVAL);
	printf("HKDF-SHA256 RFC 5869 vectors: ok\n");
}

static void test_gcm(void)
{
	static uint8_t pt[5000], sealed[5000 + BAL_GCM_OVERHEAD], bad[5000 + BAL_GCM_OVERHEAD],
		out[5000];
	uint8_t key[BAL_GCM_KEY_LEN], key2[BAL_GCM_KEY_LEN], s2[BAL_GCM_OVERHEAD];
	static const char aad[] = "chunks/ab/abcdef";
	const size_t n = sizeof(pt), total = sizeof(sealed);
	struct bal_xts_key *vk, *vk2;

	fill(pt, n, 0x44);
	CHECK_RC(bal_xts_key_generate(&vk), 0);
	CHECK_RC(bal_xts_key_derive_seal(vk, key), 0);
	CHECK_RC(bal_xts_key_derive_seal(vk, key2), 0);
	CHECK(memcmp(key, key2, sizeof(key)) == 0);
	CHECK_RC(bal_xts_key_generate(&vk2), 0);
	CHECK_RC(bal_xts_key_derive_seal(vk2, key2), 0);
	CHECK(memcmp(key, key2, sizeof(key)) != 0);

	CHECK_RC(bal_gcm_seal(key, aad, strlen(aad), pt, n, sealed), 0);
	CHECK(memcmp(sealed + BAL_GCM_NONCE_LEN, pt, 64) != 0);
	CHECK_RC(bal_gcm_open(key, aad, strlen(aad), sealed, total, out), 0);
	CHECK(memcmp(out, pt, n) == 0);
	/* Random nonces: sealing twice differs. */
	CHECK_RC(bal_gcm_seal(key, aad, strlen(aad), pt, n, bad), 0);
	CHECK(memcmp(bad, sealed, total) != 0);

	/* Tampering anywhere (nonce, body, tag), wrong AAD or key, truncation. */
	for (size_t pos = 0; pos < total; pos += (pos < 64 || pos > total - 64) ? 1 : 97) {
		memcpy(bad, sealed, total);
		bad[pos] ^= 0x20;
		memset(out, 0x77, n);
		CHECK_RC(bal_gcm_open(key, aad, strlen(aad), bad, total, out), -EBADMSG);
		/* Nothing decrypted escapes. */
		CHECK(out[0] == 0 && out[n / 2] == 0 && out[n - 1] == 0);
	}
	CHECK_RC(bal_gcm_open(key, "chunks/ab/abcdeg", strlen(aad), sealed, total, out), -EBADMSG);
	CHECK_RC(bal_gcm_open(key, aad, strlen(aad) - 1, sealed, total, out), -EBADMSG);
	CHECK_RC(bal_gcm_open(key, NULL, 0, sealed, total, out), -EBADMSG);
	CHECK_RC(bal_gcm_open(key2, aad, strlen(aad), sealed, total, out), -EBADMSG);
	CHECK_RC(bal_gcm_open(key, aad, strlen(aad), sealed, total - 1, out), -EBADMSG);
	CHECK_RC(bal_gcm_open(key, aad, strlen(aad), sealed, BAL_GCM_OVERHEAD - 1, out), -EINVAL);

	/* Empty plaintext and no AAD. */
	CHECK_RC(bal_gcm_seal(key, NULL, 0, NULL, 0, s2), 0);
	CHECK_RC(bal_gcm_open(key, NULL, 0, s2, sizeof(s2), out), 0);
	s2[BAL_GCM_OVERHEAD - 1] ^= 1;
	CHECK_RC(bal_gcm_open(key, NULL, 0, s2, sizeof(s2), out), -EBADMSG);

	bal_xts_key_destroy(vk);
	bal_xts_key_destroy(vk2);
	printf("AES-256-GCM seal/open: ok\n");
}

static void test_secmem(void)
{
	size_t sizes[] = { 1, 32, 4000, 4096, 70000 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint8_t *p = bal_secmem_alloc(sizes[i]);

		CHECK(p != NULL);
		CHECK(((uintptr_t)p & 15) == 0);
		for (size_t j = 0; j < sizes[i]; j++)
			CHECK(p[j] == 0);
		memset(p, 0xee, sizes[i]);
		bal_secmem_free(p);
	}
	CHECK(bal_secmem_alloc(0) == NULL);
	CHECK(bal_secmem_alloc(SIZE_MAX) == NULL);
	bal_secmem_free(NULL);
	printf("secure memory: ok\n");
}

int main(void)
{
	char cmd[64 + sizeof(tmpdir)];

	/* The provider tests kill process groups: never our own. */
	signal(SIGPIPE, SIG_IGN);
	CHECK(mkdtemp(tmpdir) != NULL);
	test_secmem();
	test_ieee_vectors();
	test_xts_rules();
	test_wrap();
	test_master_file();
	test_provider();
	test_customer_keys();
	test_hkdf();
	test_gcm();
	test_throughput();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	CHECK(system(cmd) == 0);
	printf("%u checks passed\n", atomic_load(&checks));
	return 0;
}
