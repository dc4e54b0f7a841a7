// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "./IERC20.sol";
import {ReentrancyGuard} from "./ReentrancyGuard.sol";
import {Registry} from "./Registry.sol";
import {TokenTransfers} from "./TokenTransfers.sol";

/// Escrow, batched settlement of signed usage receipts, and challenges.
///
/// Users deposit into escrow for their payer address (the address in their
/// receipts). The operator (the Registry's operator) posts batches: a Merkle
/// root over the batch's receipts, per-user debits, per-provider credits and
/// the protocol fee. Debits leave escrow at once; credits and the fee become
/// withdrawable only when the batch is finalized after the challenge window.
/// Within the window anyone holding a receipt of the batch and its Merkle
/// proof can invalidate the batch when the receipt's enclave signature does
/// not come from a signer the Registry had at the receipt's `issuedAt`, or
/// when the charge the operator billed for it is not tokens × price; the
/// operator's bond then goes to the challenger and the debits go back to
/// escrow.
///
/// Merkle tree: leaf = keccak256(abi.encode(receiptDigest, charge)) where
/// receiptDigest is the receipt's EIP-712 signing hash under this contract's
/// domain; inner node = keccak256 of its two children, smaller first; an odd
/// node is carried up unchanged. Leaves are 64-byte preimages, inner nodes
/// 64-byte preimages of hashes: a leaf's preimage is never a pair of nodes
/// because the leaf is hashed once more before it enters the tree.
contract Settlement is ReentrancyGuard {
    using TokenTransfers for IERC20;

    enum BatchState {
        None,
        Posted,
        Finalized,
        Invalid,
        Refunded
    }

    struct Batch {
        bytes32 root;
        bytes32 debitsHash;
        bytes32 creditsHash;
        uint128 total;
        uint128 fee;
        uint64 postedAt;
        uint32 receiptCount;
        BatchState state;
    }

    /// One account and an amount; lists are sorted by strictly increasing
    /// address, so a batch has one canonical form.
    struct Entry {
        address account;
        uint256 amount;
    }

    struct Withdrawal {
        uint256 amount;
        uint64 availableAt;
    }

    /// The receipt an enclave signs (EIP-712 type `UsageReceipt`).
    struct UsageReceipt {
        bytes32 requestId;
        address nodeSigner;
        address payer;
        string modelId;
        uint64 promptTokens;
        uint64 completionTokens;
        uint64 promptPrice;
        uint64 completionPrice;
        bytes32 requestHash;
        bytes32 responseHash;
        uint64 issuedAt;
    }

    /// Why a challenge succeeded.
    enum Fault {
        BadSignature,
        SignerMismatch,
        SignerNotRegistered,
        WrongCharge
    }

    error NotGovernance(address caller);
    error NotOperator(address caller);
    error ZeroAmount();
    error FeeTooHigh(uint16 feeBps, uint16 maximum);
    error BatchExists(uint64 batchId, BatchState state);
    error BatchNotPosted(uint64 batchId, BatchState state);
    error BatchNotInvalid(uint64 batchId, BatchState state);
    error EmptyBatch(uint64 batchId);
    error NotSorted(uint256 index);
    error InsufficientEscrow(address user, uint256 balance, uint256 debit);
    error Unbalanced(uint256 debits, uint256 credits, uint256 fee);
    error WrongFee(uint256 expected, uint256 given);
    error BondTooLow(uint256 bond, uint256 required);
    error ChallengeWindowOpen(uint64 batchId, uint64 closesAt);
    error ChallengeWindowClosed(uint64 batchId, uint64 closedAt);
    error ListMismatch(uint64 batchId);
    error NotInBatch(uint64 batchId);
    error ChallengeFailed(uint64 batchId);
    error NothingToWithdraw(address account);
    error WithdrawalNotReady(address account, uint64 availableAt);
    error AmountTooLarge(uint256 amount);

    event Deposited(address indexed user, address indexed from, uint256 amount, uint256 balance);
    event WithdrawalRequested(address indexed user, uint256 amount, uint64 availableAt);
    event WithdrawalCancelled(address indexed user);
    event Withdrawn(address indexed user, uint256 amount);
    event BondDeposited(address indexed from, uint256 amount, uint256 bond);
    event BatchPosted(
        uint64 indexed batchId, bytes32 root, uint32 receiptCount, uint256 total, uint256 fee, bytes32 debitsHash, bytes32 creditsHash
    );
    event Debited(uint64 indexed batchId, address indexed user, uint256 amount);
    event BatchFinalized(uint64 indexed batchId);
    event Credited(uint64 indexed batchId, address indexed provider, uint256 amount);
    event BatchInvalidated(
        uint64 indexed batchId, address indexed challenger, bytes32 receiptDigest, Fault fault, uint256 bondSlashed
    );
    event BatchRefunded(uint64 indexed batchId);
    event CreditWithdrawn(address indexed provider, uint256 amount);
    event FeeChanged(uint16 feeBps);
    event FeesWithdrawn(address indexed to, uint256 amount);

    bytes32 public constant RECEIPT_TYPEHASH = keccak256(
        "UsageReceipt(bytes32 requestId,address nodeSigner,address payer,string modelId,uint64 promptTokens,uint64 completionTokens,uint64 promptPrice,uint64 completionPrice,bytes32 requestHash,bytes32 responseHash,uint64 issuedAt)"
    );
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    /// secp256k1n / 2: signatures with a larger `s` are the malleable twin.
    uint256 private constant HALF_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;
    uint16 public constant MAX_FEE_BPS = 1000;

    IERC20 public immutable token;
    Registry public immutable registry;
    uint64 public immutable challengeWindow;
    uint64 public immutable withdrawalDelay;
    uint256 public immutable requiredBond;

    uint16 public feeBps;
    uint256 public operatorBond;
    uint256 public protocolFees;
    mapping(address => uint256) public escrow;
    mapping(address => Withdrawal) public pendingWithdrawals;
    mapping(address => uint256) public credits;
    mapping(uint64 => Batch) public batches;

    modifier onlyGovernance() {
        if (msg.sender != registry.governance()) revert NotGovernance(msg.sender);
        _;
    }

    modifier onlyOperator() {
        if (msg.sender != registry.operator()) revert NotOperator(msg.sender);
        _;
    }

    constructor(
        IERC20 token_,
        Registry registry_,
        uint16 feeBps_,
        uint64 challengeWindow_,
        uint64 withdrawalDelay_,
        uint256 requiredBond_
    ) {
        if (feeBps_ > MAX_FEE_BPS) revert FeeTooHigh(feeBps_, MAX_FEE_BPS);
        token = token_;
        registry = registry_;
        feeBps = feeBps_;
        challengeWindow = challengeWindow_;
        withdrawalDelay = withdrawalDelay_;
        requiredBond = requiredBond_;
        emit FeeChanged(feeBps_);
    }

    // ---- governance and operator ----

    function setFeeBps(uint16 feeBps_) external onlyGovernance {
        if (feeBps_ > MAX_FEE_BPS) revert FeeTooHigh(feeBps_, MAX_FEE_BPS);
        feeBps = feeBps_;
        emit FeeChanged(feeBps_);
    }

    function withdrawFees(address to) external onlyGovernance nonReentrant {
        uint256 amount = protocolFees;
        if (amount == 0) revert NothingToWithdraw(to);
        protocolFees = 0;
        emit FeesWithdrawn(to, amount);
        token.pay(to, amount);
    }

    /// Adds to the operator's bond (anyone may top it up).
    function depositBond(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        operatorBond += amount;
        emit BondDeposited(msg.sender, amount, operatorBond);
        token.collect(msg.sender, address(this), amount);
    }

    // ---- users ----

    function deposit(uint256 amount) external {
        depositFor(msg.sender, amount);
    }

    function depositFor(address user, uint256 amount) public nonReentrant {
        if (amount == 0) revert ZeroAmount();
        escrow[user] += amount;
        emit Deposited(user, msg.sender, amount, escrow[user]);
        token.collect(msg.sender, address(this), amount);
    }

    /// Announces a withdrawal of `amount` (replacing any earlier request);
    /// it can be taken after `withdrawalDelay`, so that receipts already
    /// served can still be settled against the escrow.
    function requestWithdrawal(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        uint64 availableAt = uint64(block.timestamp) + withdrawalDelay;
        pendingWithdrawals[msg.sender] = Withdrawal({amount: amount, availableAt: availableAt});
        emit WithdrawalRequested(msg.sender, amount, availableAt);
    }

    function cancelWithdrawal() external {
        delete pendingWithdrawals[msg.sender];
        emit WithdrawalCancelled(msg.sender);
    }

    /// Pays out the requested amount, or what is left in escrow if batches
    /// debited it in the meantime.
    function withdraw() external nonReentrant {
        Withdrawal memory w = pendingWithdrawals[msg.sender];
        if (w.amount == 0) revert NothingToWithdraw(msg.sender);
        if (block.timestamp < w.availableAt) revert WithdrawalNotReady(msg.sender, w.availableAt);
        uint256 balance = escrow[msg.sender];
        uint256 amount = w.amount < balance ? w.amount : balance;
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        delete pendingWithdrawals[msg.sender];
        escrow[msg.sender] = balance - amount;
        emit Withdrawn(msg.sender, amount);
        token.pay(msg.sender, amount);
    }

    // ---- batches ----

    function postBatch(
        uint64 batchId,
        bytes32 root,
        uint32 receiptCount,
        Entry[] calldata debits,
        Entry[] calldata credits_,
        uint256 fee
    ) external onlyOperator {
        Batch storage b = batches[batchId];
        if (b.state != BatchState.None) revert BatchExists(batchId, b.state);
        if (receiptCount == 0 || debits.length == 0) revert EmptyBatch(batchId);
        if (operatorBond < requiredBond) revert BondTooLow(operatorBond, requiredBond);

        uint256 totalDebits;
        address previous;
        for (uint256 i = 0; i < debits.length; i++) {
            Entry calldata d = debits[i];
            if (d.account <= previous) revert NotSorted(i);
            previous = d.account;
            uint256 balance = escrow[d.account];
            if (balance < d.amount) revert InsufficientEscrow(d.account, balance, d.amount);
            escrow[d.account] = balance - d.amount;
            totalDebits += d.amount;
            emit Debited(batchId, d.account, d.amount);
        }
        uint256 totalCredits;
        previous = address(0);
        for (uint256 i = 0; i < credits_.length; i++) {
            if (credits_[i].account <= previous) revert NotSorted(i);
            previous = credits_[i].account;
            totalCredits += credits_[i].amount;
        }
        if (totalDebits != totalCredits + fee) revert Unbalanced(totalDebits, totalCredits, fee);
        uint256 expectedFee = totalDebits * feeBps / 10_000;
        if (fee != expectedFee) revert WrongFee(expectedFee, fee);
        if (totalDebits > type(uint128).max) revert AmountTooLarge(totalDebits);

        bytes32 debitsHash = keccak256(abi.encode(debits));
        bytes32 creditsHash = keccak256(abi.encode(credits_));
        batches[batchId] = Batch({
            root: root,
            debitsHash: debitsHash,
            creditsHash: creditsHash,
            total: uint128(totalDebits),
            fee: uint128(fee),
            postedAt: uint64(block.timestamp),
            receiptCount: receiptCount,
            state: BatchState.Posted
        });
        emit BatchPosted(batchId, root, receiptCount, totalDebits, fee, debitsHash, creditsHash);
    }

    /// After the challenge window: makes the batch's credits and fee
    /// withdrawable. Anyone may call it with the batch's credit list.
    function finalizeBatch(uint64 batchId, Entry[] calldata credits_) external {
        Batch storage b = batches[batchId];
        if (b.state != BatchState.Posted) revert BatchNotPosted(batchId, b.state);
        uint64 closesAt = b.postedAt + challengeWindow;
        if (block.timestamp < closesAt) revert ChallengeWindowOpen(batchId, closesAt);
        if (keccak256(abi.encode(credits_)) != b.creditsHash) revert ListMismatch(batchId);
        b.state = BatchState.Finalized;
        for (uint256 i = 0; i < credits_.length; i++) {
            credits[credits_[i].account] += credits_[i].amount;
            emit Credited(batchId, credits_[i].account, credits_[i].amount);
        }
        protocolFees += b.fee;
        emit BatchFinalized(batchId);
    }

    function withdrawCredit() external nonReentrant {
        uint256 amount = credits[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        credits[msg.sender] = 0;
        emit CreditWithdrawn(msg.sender, amount);
        token.pay(msg.sender, amount);
    }

    /// Invalidates a posted batch within its window with one of its receipts
    /// that the chain can show to be wrong; reverts `ChallengeFailed` when the
    /// receipt is sound.
    function challenge(
        uint64 batchId,
        UsageReceipt calldata receipt,
        bytes calldata signature,
        uint256 charged,
        bytes32[] calldata proof
    ) external nonReentrant {
        Batch storage b = batches[batchId];
        if (b.state != BatchState.Posted) revert BatchNotPosted(batchId, b.state);
        uint64 closesAt = b.postedAt + challengeWindow;
        if (block.timestamp >= closesAt) revert ChallengeWindowClosed(batchId, closesAt);
        bytes32 digest = receiptDigest(receipt);
        if (!verifyProof(b.root, leaf(digest, charged), proof)) revert NotInBatch(batchId);

        (bool faulty, Fault fault) = _fault(receipt, digest, signature, charged);
        if (!faulty) revert ChallengeFailed(batchId);
        b.state = BatchState.Invalid;
        uint256 slashed = operatorBond;
        operatorBond = 0;
        emit BatchInvalidated(batchId, msg.sender, digest, fault, slashed);
        if (slashed != 0) token.pay(msg.sender, slashed);
    }

    /// Returns an invalidated batch's debits to escrow (anyone may call it
    /// with the batch's debit list).
    function refundBatch(uint64 batchId, Entry[] calldata debits) external {
        Batch storage b = batches[batchId];
        if (b.state != BatchState.Invalid) revert BatchNotInvalid(batchId, b.state);
        if (keccak256(abi.encode(debits)) != b.debitsHash) revert ListMismatch(batchId);
        b.state = BatchState.Refunded;
        for (uint256 i = 0; i < debits.length; i++) {
            escrow[debits[i].account] += debits[i].amount;
        }
        emit BatchRefunded(batchId);
    }

    // ---- views ----

    function domainSeparator() public view returns (bytes32) {
        return keccak256(
            abi.encode(DOMAIN_TYPEHASH, keccak256("Cloister"), keccak256("1"), block.chainid, address(this))
        );
    }

    /// The receipt's EIP-712 signing hash under this contract's domain.
    function receiptDigest(UsageReceipt calldata r) public view returns (bytes32) {
        bytes32 structHash = keccak256(
            abi.encode(
                RECEIPT_TYPEHASH,
                r.requestId,
                r.nodeSigner,
                r.payer,
                keccak256(bytes(r.modelId)),
                r.promptTokens,
                r.completionTokens,
                r.promptPrice,
                r.completionPrice,
                r.requestHash,
                r.responseHash,
                r.issuedAt
            )
        );
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator(), structHash));
    }

    function leaf(bytes32 digest, uint256 charged) public pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(digest, charged))));
    }

    function verifyProof(bytes32 root, bytes32 leafHash, bytes32[] calldata proof) public pure returns (bool) {
        bytes32 node = leafHash;
        for (uint256 i = 0; i < proof.length; i++) {
            bytes32 sibling = proof[i];
            node = node < sibling ? keccak256(abi.encode(node, sibling)) : keccak256(abi.encode(sibling, node));
        }
        return node == root;
    }

    /// Whether the receipt with this charge is in the batch.
    function isIncluded(uint64 batchId, bytes32 digest, uint256 charged, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        Batch storage b = batches[batchId];
        return b.state != BatchState.None && verifyProof(b.root, leaf(digest, charged), proof);
    }

    /// The signer of `digest`, or address(0) for a malformed or malleable
    /// signature.
    function recoverSigner(bytes32 digest, bytes calldata signature) public pure returns (address) {
        if (signature.length != 65) return address(0);
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > HALF_ORDER || (v != 27 && v != 28)) return address(0);
        return ecrecover(digest, v, r, s);
    }

    function _fault(UsageReceipt calldata r, bytes32 digest, bytes calldata signature, uint256 charged)
        private
        view
        returns (bool, Fault)
    {
        address signer = recoverSigner(digest, signature);
        if (signer == address(0)) return (true, Fault.BadSignature);
        if (signer != r.nodeSigner) return (true, Fault.SignerMismatch);
        (bool active,) = registry.signerActiveAt(signer, r.issuedAt);
        if (!active) return (true, Fault.SignerNotRegistered);
        uint256 expected = uint256(r.promptTokens) * r.promptPrice + uint256(r.completionTokens) * r.completionPrice;
        if (charged != expected) return (true, Fault.WrongCharge);
        return (false, Fault.BadSignature);
    }
}
